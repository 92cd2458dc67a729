import VirtioCore
import VirtioTransport

/// A virtio-net device (VIRTIO 1.2 §5.1) that is one port of a ``NetworkSwitch``: what
/// `virtio-grant serve --device net` serves each front-end, a Linux guest's virtio_net or
/// another process's ``FrontEnd``.
///
/// Queue 0 receives, queue 1 transmits; no control queue, no offloads (the 12-byte header of
/// VERSION_1, zero but for `num_buffers`). Received frames wait in the port's bounded queue
/// until the guest posts buffers: the receive queue pops only as many buffers as there are
/// frames (``VirtioDevice/readyBuffers(queue:)``), and a frame arriving at an empty queue rings
/// its doorbell. Frames move in bursts, with no allocation per frame (NetworkDevice+DataPath).
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
    let networkSwitch: NetworkSwitch
    /// Frames waiting for the guest's receive buffers (GHT-NET-04, GHT-NET-08).
    let waiting: Locked<NetworkFrameQueue>
    /// The transmit queue's scratch space, reused for every batch (GHT-NET-09).
    let burst = Locked(TransmitBurst(capacity: 64))
    let doorbell = Locked<QueueDoorbell?>(nil)
    let counters = Locked(Statistics())

    /// A new port of `networkSwitch`, offering `mac` (by default
    /// ``NetworkSwitch/defaultAddress(port:)``, unique per port, GHT-ISO-01).
    ///
    /// When the switch has ``NetworkSwitch/maxPorts`` ports already, or another port owns
    /// `mac`, the device is not attached: its link is down, and every frame it transmits is
    /// dropped and counted (``Statistics/droppedUnplugged``).
    public init(switch networkSwitch: NetworkSwitch, mac: EthernetAddress? = nil) {
        self.networkSwitch = networkSwitch
        let reserved = networkSwitch.reservePort(mac: mac)
        // A port not attached never gets a frame: no slots (a peer opening connections beyond
        // maxPorts reserves no queue memory).
        waiting = Locked(NetworkFrameQueue(capacity: reserved == nil ? 0 : networkSwitch.portQueueLimit))
        port = reserved?.port ?? 0
        self.mac = reserved?.mac ?? mac ?? NetworkSwitch.defaultAddress(port: 0)
        if reserved != nil { networkSwitch.attach(self, as: port) }
    }

    deinit {
        if isAttached { networkSwitch.detach(port) }
        waiting.withLock { $0.deallocate() }
    }

    /// Whether the device is a port of its switch.
    public var isAttached: Bool { port != 0 }

    public var statistics: Statistics { counters.withLock { $0 } }

    public func readConfig() -> [UInt8] {
        NetworkConfigurationSpace(mac: mac, status: isAttached ? NetworkConfigurationSpace.linkUp : 0, queuePairs: 1, mtu: 1500).bytes
    }

    public func readyBuffers(queue: Int) -> Int? {
        // With a traffic source in the switch (GHT-NET-10), every buffer can be filled.
        queue == Self.receiveQueue && networkSwitch.sourceFrameLength == nil ? waiting.withLock { $0.count } : nil
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

    /// Frames waiting for this guest are dropped; the port stays attached.
    public func reset() { waiting.withLock { $0.removeAll() } }
}
