import VirtioGrant

/// A virtio entropy device (virtio-rng, VIRTIO 1.2 §5.4): device ID 4, one request queue, no
/// feature bits of its own and no configuration space. Each request is a buffer the driver
/// lets the device write; the device fills it with random bytes and completes it with the
/// number of bytes written.
public final class RandomDevice: VirtioDevice {
    public let deviceID: UInt32 = 4
    public let deviceFeatures: VirtioFeatures = []
    public let queueCount = 1
    public let maxQueueSize = 256

    public init() {}

    /// Called once per batch, on the queue's own thread; every buffer is already checked and
    /// resolved to host memory the device may write.
    public func process(queue: Int, batch: inout RequestBatch) {
        for i in 0..<batch.count {
            var writer = batch.writer(i)
            _ = writer.produce(upTo: writer.capacity) { piece in
                // A piece the kernel cannot fill ends the request with what was filled before.
                (try? Entropy.fill(piece)) != nil ? piece.count : 0
            }
            batch.complete(i, with: writer)
        }
    }

    /// Nothing to forget: the device keeps no state between requests.
    public func reset() {}
}
