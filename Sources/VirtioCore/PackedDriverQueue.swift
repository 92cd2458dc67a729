/// The driver (front-end) side of a packed virtqueue (VIRTIO 1.2 §2.8).
///
/// Like ``SplitDriverQueue`` it trusts nothing the device writes: each buffer id has a
/// private record (token, ring slots, writable capacity, indirect table), and a used
/// descriptor is checked against it — an id out of range or not outstanding, or a length
/// beyond the buffer, breaks the queue; a caller is never handed a buffer it did not post.
///
/// A list's later descriptors are written first and its first descriptor last, with one
/// release store of its flags (PKD-DRV-07, PKD-SUP-01); a list is placed only when the ring
/// has room for all of it (PKD-DRV-06). Used lists are retired by the slot count the driver
/// recorded (PKD-DEF-06), and with IN_ORDER a used descriptor retires every buffer made
/// available before the one it names (PKD-DEF-08).
public struct PackedDriverQueue: @unchecked Sendable {
    public let layout: PackedRingLayout
    public let ring: PackedRing
    public let features: VirtioFeatures
    @usableFromInline var indirectTables: IndirectTablePool?
    @usableFromInline let hasIndirectTables: Bool

    @usableFromInline let count: Int
    @usableFromInline let eventIndexEnabled: Bool
    @usableFromInline let inOrderEnabled: Bool
    @usableFromInline let storage: UnsafeAllocation
    /// Per buffer id (``ChainRecord``'s descriptor count is the list's ring slots).
    @usableFromInline let records: UnsafeMutablePointer<ChainRecord>
    /// Free buffer ids, a stack.
    @usableFromInline let freeIds: UnsafeMutablePointer<UInt16>
    /// IN_ORDER: outstanding ids in the order they were made available, a ring.
    @usableFromInline let order: UnsafeMutablePointer<UInt16>

    @usableFromInline var freeIdCount: Int
    @usableFromInline var freeSlots: Int
    @usableFromInline var orderStart = 0
    @usableFromInline var orderCount = 0
    /// The next slot to make available, with the driver's wrap counter.
    @usableFromInline var availPosition: PackedRingPosition = .start
    /// The next slot to read a used descriptor from, with the wrap counter it must carry.
    @usableFromInline var usedPosition: PackedRingPosition = .start
    /// The available position at the last kick decision.
    @usableFromInline var kickedPosition: PackedRingPosition = .start
    /// Whether the driver's event area is in DESC mode and follows each reap.
    @usableFromInline var tracksUsedEvent = false
    /// IN_ORDER: the id and length of the used descriptor whose batch is being retired.
    @usableFromInline var batchEnd: (id: Int, length: UInt32)? {
        didSet { unusual = broken || batchEnd != nil }
    }
    @usableFromInline var broken = false {
        didSet { unusual = broken || batchEnd != nil }
    }
    /// `broken || batchEnd != nil`, kept so that a reap tests one flag.
    @usableFromInline var unusual = false
    @usableFromInline var brokenBy: DriverQueueError?

    /// Sets up the driver side over `ring`, zeroing it first (PKD-DEF-03, QRST-DRV-02).
    ///
    /// - Parameters:
    ///   - features: the negotiated features (INDIRECT_DESC, EVENT_IDX and IN_ORDER matter).
    ///   - indirectTables: tables for indirect lists; used only with INDIRECT_DESC.
    public init(ring: PackedRing, features: VirtioFeatures, indirectTables: IndirectTablePool? = nil) {
        let n = ring.layout.count
        var plan = AllocationPlan()
        let o1 = plan.reserve(ChainRecord.self, count: n)
        let o2 = plan.reserve(UInt16.self, count: n)
        let o3 = plan.reserve(UInt16.self, count: n)
        storage = UnsafeAllocation(plan)
        records = storage.carve(ChainRecord.self, at: o1, count: n)
        freeIds = storage.carve(UInt16.self, at: o2, count: n)
        order = storage.carve(UInt16.self, at: o3, count: n)
        layout = ring.layout
        self.ring = ring
        self.features = features
        self.indirectTables = features.contains(.indirectDescriptors) ? indirectTables : nil
        hasIndirectTables = self.indirectTables != nil
        count = n
        eventIndexEnabled = features.contains(.eventIndex)
        inOrderEnabled = features.contains(.inOrder)
        freeIdCount = n
        freeSlots = n
        for i in 0..<n {
            freeIds[i] = UInt16(truncatingIfNeeded: n - 1 - i)
            records[i] = ChainRecord(token: 0, packed: ChainRecord.freeWord)
        }
        ring.zero()
    }

    /// Free slots in the descriptor ring.
    public var freeSlotCount: Int { freeSlots }
    /// Buffers made available and not yet used.
    public var outstandingCount: Int { count &- freeIdCount }
    /// Whether the device's behaviour broke the queue.
    public var isBroken: Bool { broken }
    /// The violation of the device that broke the queue, if any.
    public var failure: DriverQueueError? { brokenBy }
    /// The next slot the driver will make available, with its wrap counter.
    public var nextAvailPosition: PackedRingPosition { availPosition }
    /// The next slot the driver will read a used descriptor from, with its wrap counter.
    public var nextUsedPosition: PackedRingPosition { usedPosition }

    @inlinable
    mutating func fail(_ error: DriverQueueError) -> DriverQueueError {
        if !broken {
            broken = true
            brokenBy = error
        }
        return brokenBy ?? error
    }

    /// Takes back every outstanding buffer without waiting for the device, returning their
    /// tokens, and rewinds the queue to its initial state (wrap counters 1, the ring zeroed).
    /// Only legal once the queue is no longer live: after a device or queue reset (CLN-DRV-02).
    public mutating func detachAllOutstanding() -> [UInt64] {
        var result: [UInt64] = []
        for id in 0..<count where records[id].isOutstanding {
            result.append(records[id].token)
            if records[id].table != ChainRecord.noTable { indirectTables!.give(Int(records[id].table)) }
            records[id] = ChainRecord(token: 0, packed: ChainRecord.freeWord)
        }
        for i in 0..<count { freeIds[i] = UInt16(truncatingIfNeeded: count - 1 - i) }
        freeIdCount = count
        freeSlots = count
        orderStart = 0
        orderCount = 0
        batchEnd = nil
        availPosition = .start
        usedPosition = .start
        kickedPosition = .start
        if tracksUsedEvent { ring.driverEventArea.mode = .descriptor(usedPosition) }
        ring.zero()
        return result
    }
}

extension ChainRecord {
    @inlinable static var noTable: UInt16 { .max }
}
