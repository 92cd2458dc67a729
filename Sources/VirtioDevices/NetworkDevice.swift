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
        /// Transmitted frames from an address not the port's (GHT-ISO-02), dropped.
        public var droppedSpoofed: UInt64 = 0
        /// Flooded frames of a port that had ``NetworkSwitch/floodBudget`` frames waiting here
        /// already (GHT-ISO-03), dropped.
        public var droppedFloodBudget: UInt64 = 0
        /// Transmitted frames of a port that is not attached to the switch, dropped.
        public var droppedUnplugged: UInt64 = 0
    }

    public static let receiveQueue = 0
    public static let transmitQueue = 1

    public let deviceID: UInt32 = 1
    public let deviceFeatures: VirtioFeatures = [.networkMAC, .networkStatus]
    public let queueCount = 2
    public let maxQueueSize = 1024
    /// The address the configuration space offers.
    public let mac: EthernetAddress
    /// This device's port number on the switch; 0 when it is not attached
    /// (``isAttached``).
    public let port: Int
    private let networkSwitch: NetworkSwitch
    private let waiting = Locked(Waiting())
    private let doorbell = Locked<QueueDoorbell?>(nil)
    private let counters = Locked(Statistics())

    /// Frames waiting for the guest's receive buffers, with the port each came from.
    private struct Waiting {
        var frames: [(frame: [UInt8], source: Int, flooded: Bool)] = []
        /// Flooded frames waiting, by source port (GHT-ISO-03).
        var flooded: [Int: Int] = [:]
    }

    /// A new port of `networkSwitch`, offering `mac` (by default
    /// ``NetworkSwitch/defaultAddress(port:)``, unique per port, GHT-ISO-01).
    ///
    /// When the switch has ``NetworkSwitch/maxPorts`` ports already, or another port owns
    /// `mac`, the device is not attached: its link is down, and every frame it transmits is
    /// dropped and counted (``Statistics/droppedUnplugged``).
    public init(switch networkSwitch: NetworkSwitch, mac: EthernetAddress? = nil) {
        self.networkSwitch = networkSwitch
        let reserved = networkSwitch.reservePort(mac: mac)
        port = reserved?.port ?? 0
        self.mac = reserved?.mac ?? mac ?? NetworkSwitch.defaultAddress(port: 0)
        if reserved != nil { networkSwitch.attach(self, as: port) }
    }

    deinit { if isAttached { networkSwitch.detach(port) } }

    /// Whether the device is a port of its switch.
    public var isAttached: Bool { port != 0 }

    public var statistics: Statistics { counters.withLock { $0 } }

    public func readConfig() -> [UInt8] {
        NetworkConfigurationSpace(mac: mac, status: isAttached ? NetworkConfigurationSpace.linkUp : 0, queuePairs: 1, mtu: 1500).bytes
    }

    // MARK: Receive side (frames from the switch)

    /// Queues a frame from port `source` for this port's guest; false when it is dropped: the
    /// queue is full (GHT-NET-04), or the frame is flooded and `source` has its budget of
    /// flooded frames waiting here already (GHT-ISO-03).
    func enqueue(_ frame: [UInt8], from source: Int, flooded: Bool) -> Bool {
        let budget = networkSwitch.floodBudget, limit = networkSwitch.portQueueLimit
        let refusal = waiting.withLock { w -> WritableKeyPath<Statistics, UInt64>? in
            guard w.frames.count < limit else { return \.droppedQueueFull }
            if flooded {
                guard w.flooded[source, default: 0] < budget else { return \.droppedFloodBudget }
                w.flooded[source, default: 0] += 1
            }
            w.frames.append((frame, source, flooded))
            return nil
        }
        if let refusal {
            counters.withLock { $0[keyPath: refusal] += 1 }
            return false
        }
        doorbell.withLock { $0 }?.ring()
        return true
    }

    public func readyBuffers(queue: Int) -> Int? {
        queue == Self.receiveQueue ? waiting.withLock { $0.frames.count } : nil
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
            let n = min(w.frames.count, batch.count)
            let taken = w.frames.prefix(n)
            for f in taken where f.flooded {
                w.flooded[f.source, default: 1] -= 1
                if w.flooded[f.source] == 0 { w.flooded[f.source] = nil }
            }
            defer { w.frames.removeFirst(n) }
            return taken.map(\.frame)
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
        var tally = Statistics()
        for i in 0..<batch.count {
            var reader = batch.reader(i)
            let frameLength = reader.remaining - NetworkHeader.byteCount
            if frameLength >= 14 && frameLength <= NetworkSwitch.maxFrameSize {
                reader.skip(NetworkHeader.byteCount)
                // The frame is copied once; the switch decides on, and forwards, this copy.
                if let frame = try? reader.readBytes(frameLength) {
                    switch networkSwitch.forward(frame, from: port) {
                    case .forwarded: tally.framesSent += 1
                    case .spoofed: tally.droppedSpoofed += 1
                    case .unplugged: tally.droppedUnplugged += 1
                    }
                }
            } else {
                tally.malformed += 1
            }
            batch.complete(i, usedLength: 0)
        }
        counters.withLock { s in
            s.framesSent += tally.framesSent
            s.malformed += tally.malformed
            s.droppedSpoofed += tally.droppedSpoofed
            s.droppedUnplugged += tally.droppedUnplugged
        }
    }

    /// Frames waiting for this guest are dropped; the port stays attached.
    public func reset() { waiting.withLock { $0 = Waiting() } }
}
