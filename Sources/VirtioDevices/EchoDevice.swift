import Synchronization
import VirtioCore
import VirtioTransport

/// A loopback device for transport benchmarks: each request's device-readable bytes are copied
/// into its device-writable buffers, fragment to fragment, as far as they fit. It does no work
/// of its own, so what it costs is what the transport (ring, mapper, copies) costs.
///
/// Device ID 0xFFFE (unassigned by VIRTIO, like ``ChecksumEchoDevice``); the same
/// configuration space: le32 number of queues, le32 largest queue size.
public final class EchoDevice: VirtioDevice {
    public let deviceID: UInt32 = 0xFFFE
    public let deviceFeatures: VirtioFeatures = []
    public let queueCount: Int
    public let maxQueueSize: Int
    private let answered = Atomic<UInt64>(0)

    public init(queueCount: Int = 1, maxQueueSize: Int = 256) {
        self.queueCount = queueCount
        self.maxQueueSize = maxQueueSize
    }

    /// Requests answered since creation (or the last reset).
    public var requestsAnswered: UInt64 { answered.load(ordering: .relaxed) }

    public func readConfig() -> [UInt8] { ChecksumEchoDevice.configSpace(queueCount: queueCount, maxQueueSize: maxQueueSize) }

    public func process(queue: Int, batch: inout RequestBatch) {
        for i in 0..<batch.count {
            var reader = batch.reader(i)
            var writer = batch.writer(i)
            writer.transfer(from: &reader)
            batch.complete(i, with: writer)
        }
        answered.add(UInt64(batch.count), ordering: .relaxed)
    }

    public func reset() { answered.store(0, ordering: .relaxed) }
}
