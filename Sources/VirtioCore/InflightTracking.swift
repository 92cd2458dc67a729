/// A device queue that keeps its part of the vhost-user in-flight area current and resubmits
/// what it records (Spec/restart.md §1): ``SplitDeviceQueue`` in the split layout,
/// ``PackedDeviceQueue`` in the packed one.
public protocol InflightTracking: ~Copyable {
    /// Whether the queue's area is in the packed layout (`QueueRegionPacked`).
    static var tracksPackedLayout: Bool { get }
    /// Recovers `range` and starts tracking in it; an area that cannot be believed breaks the queue.
    mutating func trackInflight(in range: HostRange) throws(VirtqueueError)
    /// Requests still to resubmit from the area.
    var pendingResubmissions: Int { get }
}

extension SplitDeviceQueue: InflightTracking {
    public static var tracksPackedLayout: Bool { false }
}

extension PackedDeviceQueue: InflightTracking {
    public static var tracksPackedLayout: Bool { true }
}
