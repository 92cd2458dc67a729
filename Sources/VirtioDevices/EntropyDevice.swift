import Synchronization
import VirtioCore
import VirtioTransport
import VirtioSystem

/// A virtio entropy device (virtio-rng, VIRTIO 1.2 §5.4), written on the public API only: an
/// example of the smallest useful device.
///
/// Device ID 4; one request queue; no device-type features and no configuration space. Each
/// request is a device-writable buffer, which the device fills entirely with random bytes from
/// the kernel (``Entropy``, `getrandom`) and completes with its length. Readable descriptors
/// carry nothing for this device and are ignored. Served to QEMU with
/// `-device vhost-user-rng-pci,chardev=...` (a Linux guest reads the bytes from /dev/hwrng).
public final class EntropyDevice: VirtioDevice {
    public let deviceID: UInt32 = 4
    public let deviceFeatures: VirtioFeatures = []
    public let queueCount = 1
    public let maxQueueSize: Int
    private let produced = Atomic<UInt64>(0)
    private let failed = Atomic<UInt64>(0)
    private let source: @Sendable (UnsafeMutableRawBufferPointer) -> Bool

    /// - Parameter maxQueueSize: the largest queue the driver may set up (QEMU 7.2's
    ///   vhost-user-rng uses 4).
    public convenience init(maxQueueSize: Int = 256) {
        self.init(maxQueueSize: maxQueueSize) { buffer in (try? Entropy.fill(buffer)) != nil }
    }

    /// A device drawing from `source`, which fills the whole buffer it is given and returns
    /// whether it could (a test seam: a failing source completes requests with nothing).
    public init(maxQueueSize: Int = 256, source: @escaping @Sendable (UnsafeMutableRawBufferPointer) -> Bool) {
        self.maxQueueSize = maxQueueSize
        self.source = source
    }

    /// Random bytes handed to the driver since creation (or the last reset).
    public var bytesProduced: UInt64 { produced.load(ordering: .relaxed) }
    /// Requests completed with nothing because the source failed.
    public var requestsFailed: UInt64 { failed.load(ordering: .relaxed) }

    public func readConfig() -> [UInt8] { [] }

    public func process(queue: Int, batch: inout RequestBatch) {
        var total = 0
        for i in 0..<batch.count {
            var writer = batch.writer(i)
            var ok = true
            // A fragment the source cannot fill ends the walk: the request completes with what
            // was filled before it (§5.4.6: the used length is what the device wrote).
            _ = writer.produce(upTo: writer.capacity) { part in
                ok = source(part)
                return ok ? part.count : 0
            }
            if !ok { failed.add(1, ordering: .relaxed) }
            total += writer.bytesWritten
            batch.complete(i, with: writer)
        }
        produced.add(UInt64(total), ordering: .relaxed)
    }

    public func reset() {
        produced.store(0, ordering: .relaxed)
        failed.store(0, ordering: .relaxed)
    }
}
