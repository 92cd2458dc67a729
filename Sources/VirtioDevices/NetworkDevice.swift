import VirtioCore
import VirtioTransport

/// A virtio-net device (VIRTIO 1.2 §5.1) that is one port of a ``NetworkSwitch``: what
/// `virtio-grant serve --device net` serves each front-end, a Linux guest's virtio_net or
/// another process's ``FrontEnd``.
///
/// Queue 0 receives, queue 1 transmits; no control queue, no offloads (the 12-byte header of
/// VERSION_1, zero but for `num_buffers`). Received frames wait in the port's bounded queue
/// until the guest posts buffers: the receive queue pops only as many buffers as there are
/// frames (``VirtioDevice/readyBuffers(queue:)``), and a frame arriving rings its doorbell.
public final class NetworkDevice: VirtioDevice {
    /// Frames and drops, readable from any thread.
    public struct Statistics: Sendable, Equatable {
        public var framesSent: UInt64 = 0
        public var framesReceived: UInt64 = 0
        /// Frames lost because the guest's queue of waiting frames was full.
        public var droppedQueueFull: UInt64 = 0
        /// Frames lost because the receive buffer was smaller than header and frame.
        public var droppedBufferTooSmall: UInt64 = 0
        /// Transmitted buffers shorter than a header and an Ethernet header, or longer than a frame.
        public var malformed: UInt64 = 0
    }

    public static let receiveQueue = 0
    public static let transmitQueue = 1

    public let deviceID: UInt32 = 1
    public let deviceFeatures: VirtioFeatures = [.networkMAC, .networkStatus]
    public let queueCount = 2
    public let maxQueueSize = 1024
    /// The address the configuration space offers.
    public let mac: EthernetAddress
    /// This device's port number on the switch.
    public let port: Int
    private let networkSwitch: NetworkSwitch
    private let waiting = Locked<[[UInt8]]>([])
    private let doorbell = Locked<QueueDoorbell?>(nil)
    private let counters = Locked(Statistics())

    /// A new port of `networkSwitch`, offering `mac` (by default 52:54:00:56:47:NN, NN the port).
    public init(switch networkSwitch: NetworkSwitch, mac: EthernetAddress? = nil) {
        self.networkSwitch = networkSwitch
        let port = networkSwitch.reservePort()
        self.port = port
        self.mac = mac ?? EthernetAddress(0x52, 0x54, 0x00, 0x56, 0x47, UInt8(truncatingIfNeeded: port))
        networkSwitch.attach(self, as: port)
    }

    deinit { networkSwitch.detach(port) }

    public var statistics: Statistics { counters.withLock { $0 } }

    public func readConfig() -> [UInt8] {
        NetworkConfigurationSpace(mac: mac, status: NetworkConfigurationSpace.linkUp, queuePairs: 1, mtu: 1500).bytes
    }

    // MARK: Receive side (frames from the switch)

    /// Queues a frame for this port's guest; false when its queue is full (the frame is dropped).
    func enqueue(_ frame: [UInt8]) -> Bool {
        let accepted = waiting.withLock { w in
            guard w.count < networkSwitch.portQueueLimit else { return false }
            w.append(frame)
            return true
        }
        if accepted {
            doorbell.withLock { $0 }?.ring()
        } else {
            counters.withLock { $0.droppedQueueFull += 1 }
        }
        return accepted
    }

    public func readyBuffers(queue: Int) -> Int? {
        queue == Self.receiveQueue ? waiting.withLock { $0.count } : nil
    }

    public func queueStarted(_ queue: Int, doorbell: QueueDoorbell) {
        if queue == Self.receiveQueue { self.doorbell.withLock { $0 = doorbell } }
    }

    public func queueStopped(_ queue: Int) {
        if queue == Self.receiveQueue { doorbell.withLock { $0 = nil } }
    }

    public func process(queue: Int, batch: inout RequestBatch) {
        if queue == Self.receiveQueue {
            receive(&batch)
        } else {
            transmit(&batch)
        }
    }

    /// GHT-NET-02: each buffer gets the header and one whole frame, or (too small) nothing.
    private func receive(_ batch: inout RequestBatch) {
        let frames: [[UInt8]] = waiting.withLock { w in
            let n = min(w.count, batch.count)
            defer { w.removeFirst(n) }
            return Array(w.prefix(n))
        }
        var received: UInt64 = 0, tooSmall: UInt64 = 0
        for i in 0..<batch.count {
            var writer = batch.writer(i)
            // Only after a reset raced the batch are there fewer frames than buffers.
            guard i < frames.count else {
                batch.complete(i, usedLength: 0)
                continue
            }
            guard writer.capacity >= NetworkHeader.byteCount + frames[i].count else {
                tooSmall += 1
                batch.complete(i, usedLength: 0)
                continue
            }
            try? writer.write(contentsOf: NetworkHeader.receive)
            try? writer.write(contentsOf: frames[i])
            batch.complete(i, with: writer)
            received += 1
        }
        counters.withLock { s in
            s.framesReceived += received
            s.droppedBufferTooSmall += tooSmall
        }
    }

    /// GHT-NET-01: each buffer is a header and one frame, handed to the switch.
    private func transmit(_ batch: inout RequestBatch) {
        var sent: UInt64 = 0, malformed: UInt64 = 0
        for i in 0..<batch.count {
            var reader = batch.reader(i)
            let frameLength = reader.remaining - NetworkHeader.byteCount
            if frameLength >= 14 && frameLength <= NetworkSwitch.maxFrameSize {
                reader.skip(NetworkHeader.byteCount)
                if let frame = try? reader.readBytes(frameLength) {
                    networkSwitch.forward(frame, from: port)
                    sent += 1
                }
            } else {
                malformed += 1
            }
            batch.complete(i, usedLength: 0)
        }
        counters.withLock { s in
            s.framesSent += sent
            s.malformed += malformed
        }
    }

    /// Frames waiting for this guest are dropped; the port stays attached.
    public func reset() { waiting.withLock { $0.removeAll() } }
}
