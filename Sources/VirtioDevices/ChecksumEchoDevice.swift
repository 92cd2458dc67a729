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
    public static func checksum(_ bytes: some Sequence<UInt8>) -> UInt64 { checksum(bytes, from: checksumSeed) }

    /// FNV-1a's offset basis: the checksum of nothing.
    static let checksumSeed: UInt64 = 0xcbf2_9ce4_8422_2325

    /// FNV-1a continued over `bytes` from `hash` (the checksum of what came before).
    static func checksum(_ bytes: some Sequence<UInt8>, from hash: UInt64) -> UInt64 {
        var hash = hash
        for b in bytes { hash = (hash ^ UInt64(b)) &* 0x100_0000_01b3 }
        return hash
    }

    /// The bytes of a request held in private memory at once (GHT-LIM-60).
    public static let chunkSize = 4096

    /// GHT-LIM-60: a request is streamed through one fixed chunk, whatever its length (a chain
    /// may name the same buffer many times over): each readable byte is read once into the
    /// chunk, hashed and echoed from there, and the checksum goes in front at the end.
    public func process(queue: Int, batch: inout RequestBatch) {
        withUnsafeTemporaryAllocation(byteCount: Self.chunkSize, alignment: 16) { chunk in
            for i in 0..<batch.count {
                var reader = batch.reader(i)
                let echo = Self.answer(&reader, batch.writer(i), chunk: chunk)
                batch.complete(i, with: echo)
            }
        }
        counters.add(UInt64(batch.count), ordering: .relaxed)
    }

    /// Answers one request: its bytes echoed after their checksum, through `chunk` (at least
    /// ``chunkSize`` bytes). Returns the writer that wrote the reply, for the used length; the
    /// same answer whether the request is completed in `process` or later (GHT-ASY-01).
    public static func answer(_ reader: inout FragmentReader, _ writer: FragmentWriter, chunk: UnsafeMutableRawBufferPointer) -> FragmentWriter {
        var echo = writer
        guard echo.remaining >= 8 else { return echo }
        echo.produce(upTo: 8) { $0.count }   // the checksum's place, written last
        var hash = checksumSeed
        while reader.remaining > 0 {
            let n = reader.read(into: chunk)
            let part = UnsafeRawBufferPointer(rebasing: chunk[..<n])
            hash = checksum(part, from: hash)
            echo.write(part)
        }
        var head = writer
        try? head.write(hash)
        return echo
    }

    public func reset() { counters.store(0, ordering: .relaxed) }
}
