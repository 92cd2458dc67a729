import Synchronization
import VirtioCore
import VirtioTransport

/// A sample device for the demo and the benchmarks: each request's reply is the FNV-1a-64
/// checksum of its device-readable bytes (little-endian) followed by those bytes echoed back,
/// as far as the request's device-writable capacity allows.
///
/// Device ID 0xFFFF: VIRTIO assigns no ID to such a device, and this one never meets a real
/// driver. Configuration space: le32 number of queues, le32 largest queue size.
public final class ChecksumEchoDevice: VirtioDevice {
    public let deviceID: UInt32 = 0xFFFF
    public let deviceFeatures: VirtioFeatures = []
    public let queueCount: Int
    public let maxQueueSize: Int
    private let counters = Atomic<UInt64>(0)

    public init(queueCount: Int = 1, maxQueueSize: Int = 256) {
        self.queueCount = queueCount
        self.maxQueueSize = maxQueueSize
    }

    /// Requests answered since creation (or the last reset).
    public var requestsAnswered: UInt64 { counters.load(ordering: .relaxed) }

    public func readConfig() -> [UInt8] { Self.configSpace(queueCount: queueCount, maxQueueSize: maxQueueSize) }

    /// The sample devices' configuration space: le32 number of queues, le32 largest queue size.
    static func configSpace(queueCount: Int, maxQueueSize: Int) -> [UInt8] {
        withUnsafeBytes(of: (UInt32(queueCount).littleEndian, UInt32(maxQueueSize).littleEndian)) { Array($0) }
    }

    /// FNV-1a, 64-bit.
    public static func checksum(_ bytes: some Sequence<UInt8>) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in bytes { hash = (hash ^ UInt64(b)) &* 0x100_0000_01b3 }
        return hash
    }

    public func process(queue: Int, batch: inout RequestBatch) {
        for i in 0..<batch.count {
            var reader = batch.reader(i)
            var writer = batch.writer(i)
            if writer.remaining >= 8 {
                let request = (try? reader.readBytes(reader.remaining)) ?? []
                try? writer.write(Self.checksum(request))
                _ = request.withUnsafeBytes { writer.write($0) }
            }
            batch.complete(i, with: writer)
        }
        counters.add(UInt64(batch.count), ordering: .relaxed)
    }

    public func reset() { counters.store(0, ordering: .relaxed) }
}
