import VirtioCore
import VirtioTransport
import VirtioSystem

/// A virtio socket device (virtio-vsock, VIRTIO 1.2 §5.10) bridging the guest's AF_VSOCK stream
/// connections to host unix sockets (``VsockHost``), written on the public API only.
///
/// Device ID 19; queue 0 receives (host to guest), queue 1 transmits, queue 2 is the event
/// queue (never used: no transport reset is ever posted); no device-type feature (stream
/// sockets only); the configuration space is the guest's CID. Served to QEMU with
/// `-device vhost-user-vsock-pci,chardev=...`.
///
/// Packets for the guest (answers, resets, host data) wait in the device until the guest posts
/// receive buffers: the receive queue pops only as many buffers as there are packets
/// (``VirtioDevice/readyBuffers(queue:)``), and host data or an answer arriving rings its
/// doorbell, as a frame does for ``NetworkDevice``. Host sockets are read and written without
/// blocking on the queue workers; ``VsockHost``'s thread reports when they are ready.
///
/// Flow control (§5.10.6.3) both ways: the guest never gets more bytes than the credit it
/// advertised, and it is given a buffer of ``bufferSize`` bytes per connection, which bounds
/// what the device holds for a host that does not read (GHT-VSK).
public final class VsockDevice: VirtioDevice {
    /// Connections and faults, readable from any thread.
    public struct Statistics: Sendable, Equatable {
        /// Connections established, either way.
        public var connectionsOpened: UInt64 = 0
        /// Guest connections no host program listened for, and host connections the guest
        /// refused.
        public var connectionsRefused: UInt64 = 0
        /// Established connections reset (by either side, or for a fault).
        public var connectionsReset: UInt64 = 0
        public var bytesToHost: UInt64 = 0
        public var bytesToGuest: UInt64 = 0
        /// Receive buffers too small for a header, completed empty.
        public var buffersTooSmall: UInt64 = 0
        /// Every malformed or refused packet, by kind (GHT-VSK).
        public var faults: [VsockFault: UInt64] = [:]

        public init() {}
    }

    public static let receiveQueue = 0
    public static let transmitQueue = 1
    public static let eventQueue = 2
    /// The most payload one packet to the guest carries (Linux's VIRTIO_VSOCK_MAX_PKT_BUF_SIZE).
    public static let maxPayload = 64 * 1024
    /// Resets owed to the guest for packets that named no connection, held for receive buffers;
    /// beyond it they are dropped and counted (``VsockFault/resetDropped``).
    public static let maxPendingResets = 256

    public let deviceID: UInt32 = 19
    public let deviceFeatures: VirtioFeatures = []
    public let queueCount = 3
    public let maxQueueSize: Int
    /// The guest's address, offered in the configuration space; packets from any other are dropped.
    public let guestCID: UInt64
    /// Connections open at once; a REQUEST or a host connection beyond it is refused.
    public let maxConnections: Int
    /// The receive buffer advertised to the guest per connection (`buf_alloc`).
    public let bufferSize: UInt32
    /// How long a host-initiated connection waits for the guest's answer to its REQUEST
    /// (2 s, as Firecracker).
    public let connectTimeout: Duration
    let host: VsockHost
    let table: Locked<VsockTable>
    private let doorbell = Locked<QueueDoorbell?>(nil)

    /// A device for the guest `guestCID` (3 or more) on `host`'s sockets; it becomes the one
    /// `host` gives host-initiated connections to.
    public init(guestCID: UInt64, host: VsockHost, maxConnections: Int = 1024, bufferSize: UInt32 = 256 * 1024, maxQueueSize: Int = 256,
                connectTimeout: Duration = .seconds(2)) {
        self.guestCID = guestCID
        self.connectTimeout = connectTimeout
        self.host = host
        self.maxConnections = max(maxConnections, 1)
        self.bufferSize = max(bufferSize, 4096)
        self.maxQueueSize = maxQueueSize
        table = Locked(VsockTable(guestCID: guestCID, bufferSize: self.bufferSize, maxConnections: self.maxConnections, host: host))
        host.attach(self)
    }

    deinit {
        host.detach(self)
        table.withLock { $0.closeAll() }
    }

    public var statistics: Statistics { table.withLock { $0.statistics } }

    /// Connections open now.
    public var connectionCount: Int { table.withLock { $0.connections.count } }

    public func readConfig() -> [UInt8] { VsockConfigurationSpace(guestCID: guestCID).bytes }

    public func readyBuffers(queue: Int) -> Int? {
        switch queue {
        case Self.receiveQueue: table.withLock { $0.packetsWaiting }
        case Self.eventQueue: 0
        default: nil
        }
    }

    public func queueStarted(_ queue: Int, doorbell: QueueDoorbell) {
        if queue == Self.receiveQueue { self.doorbell.withLock { $0 = doorbell } }
    }

    public func queueStopped(_ queue: Int) {
        if queue == Self.receiveQueue { doorbell.withLock { $0 = nil } }
    }

    public func process(queue: Int, batch: inout RequestBatch) {
        switch queue {
        case Self.receiveQueue: receive(&batch)
        case Self.transmitQueue: transmit(&batch)
        default:
            // The event queue holds its buffers (readyBuffers 0); one that got here anyway
            // carries no event.
            for i in 0..<batch.count { batch.complete(i, usedLength: 0) }
        }
    }

    /// Every connection is closed (the host programs see end of stream) and every packet owed
    /// is dropped; the host stays attached.
    public func reset() { table.withLock { $0.closeAll() } }

    /// GHT-VSK-04: each receive buffer gets one packet, header and payload.
    private func receive(_ batch: inout RequestBatch) {
        table.withLock { t in
            for i in 0..<batch.count {
                var writer = batch.writer(i)
                t.nextPacket(into: &writer)
                batch.complete(i, with: writer)
            }
        }
    }

    /// GHT-VSK-05: each transmit buffer is one packet; every one completes with used length 0.
    private func transmit(_ batch: inout RequestBatch) {
        let ring = table.withLock { t in
            for i in 0..<batch.count {
                var reader = batch.reader(i)
                t.transmit(&reader)
                batch.complete(i, usedLength: 0)
            }
            return t.packetsWaiting > 0
        }
        if ring { ringDoorbell() }
    }

    func ringDoorbell() { doorbell.withLock { $0 }?.ring() }

    /// The host thread reports the socket of connection `event.token` ready.
    func hostEvent(_ event: PollEvent) {
        if table.withLock({ $0.hostEvent(event) }) { ringDoorbell() }
    }

    /// Gives up host-initiated connections the guest did not answer (the host's thread calls
    /// this a few times a second).
    func expireRequests() {
        if table.withLock({ $0.expireRequests(olderThan: connectTimeout) }) { ringDoorbell() }
    }

    /// A host program asked for the guest's `guestPort` (``VsockHost``); false refuses it.
    func connectFromHost(_ socket: UnixSocket, guestPort: UInt32, token: UInt64) -> Bool {
        let accepted = table.withLock { $0.connectFromHost(socket, guestPort: guestPort, token: token) }
        if accepted { ringDoorbell() }
        return accepted
    }
}
