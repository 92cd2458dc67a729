import VirtioTransport
import VirtioSystem

/// One stream connection between a guest port and a host unix socket, with the credit of both
/// directions (VIRTIO 1.2 §5.10.6.3). Counters are free-running 32-bit, as on the wire.
struct VsockConnection {
    enum State {
        /// Host-initiated: the REQUEST is owed or sent, the guest has not answered yet.
        case connecting
        case established
    }

    /// The poller token of the host socket (unique for the life of the ``VsockHost``).
    let id: UInt64
    let guestPort: UInt32
    let hostPort: UInt32
    let socket: UnixSocket
    var state: State
    /// When a host-initiated connection was asked for (its REQUEST is answered within the
    /// device's `connectTimeout` or the attempt is given up).
    var requestedAt: ContinuousClock.Instant?

    // Guest to host: what the device took from the guest and what the host socket took.
    /// RW payload bytes received from the guest (`rx_cnt`).
    var received: UInt32 = 0
    /// Of those, bytes the host socket took (`fwd_cnt`).
    var forwarded: UInt32 = 0
    /// The `fwd_cnt` last told to the guest.
    var advertisedForward: UInt32 = 0
    /// Received bytes the host socket did not take yet (at most the buffer we advertise).
    var outbound: [UInt8] = []
    var outboundStart = 0

    // Host to guest: the guest's buffer and what we sent into it.
    var peerBufferAllocation: UInt32 = 0
    var peerForwardCount: UInt32 = 0
    /// RW payload bytes sent to the guest (`tx_cnt`).
    var sent: UInt32 = 0

    // Packets owed to the guest.
    var owesRequest = false
    var owesResponse = false
    var owesShutdown = false
    var owesCreditUpdate = false

    /// The host socket was reported readable (or hung up) and not read to empty since.
    var hostReadable = false
    /// The host socket's end of stream was read: SHUTDOWN(SEND) is owed or sent.
    var hostEnded = false
    /// SHUTDOWN flags the guest sent.
    var guestShutdown: UInt32 = 0
    /// The guest shut down both directions while bytes were still waiting for the host: the
    /// connection closes (and is reset) once they are out.
    var closing = false
    /// What the poller reports for the socket; empty means it is not in the poller at all (a
    /// hung-up socket would otherwise be reported on every wait).
    var interest: PollInterest = []
    /// In the device's list of connections with something for the guest.
    var queued = false

    init(id: UInt64, guestPort: UInt32, hostPort: UInt32, socket: UnixSocket, state: State) {
        self.id = id
        self.guestPort = guestPort
        self.hostPort = hostPort
        self.socket = socket
        self.state = state
    }

    /// The table key: the guest's port and the host's.
    static func key(guestPort: UInt32, hostPort: UInt32) -> UInt64 { UInt64(guestPort) << 32 | UInt64(hostPort) }
    var key: UInt64 { Self.key(guestPort: guestPort, hostPort: hostPort) }

    var pendingOutbound: Int { outbound.count - outboundStart }

    /// Bytes the guest can still take: its buffer less what is in flight. A `fwd_cnt` ahead of
    /// what was sent (a guest that lies) leaves no credit, never more.
    var peerCredit: UInt32 {
        let inFlight = sent &- peerForwardCount
        return inFlight > peerBufferAllocation ? 0 : peerBufferAllocation - inFlight
    }

    /// Whether host bytes may go to the guest now.
    var canSendData: Bool {
        state == .established && !hostEnded && guestShutdown & VsockHeader.shutdownReceive == 0 && peerCredit > 0
    }

    /// Whether the connection has a packet for the guest now.
    var hasPacket: Bool {
        owesRequest || owesResponse || owesCreditUpdate || owesShutdown || (hostReadable && canSendData)
    }

    /// What the poller should report: readable while the guest has credit and the socket is
    /// not known readable already; writable while bytes wait for the host.
    var wantedInterest: PollInterest {
        var wanted: PollInterest = []
        if canSendData && !hostReadable && !closing { wanted.insert(.readable) }
        if pendingOutbound > 0 { wanted.insert(.writable) }
        return wanted
    }

    /// A header from the host side of this connection, advertising our buffer and `fwd_cnt`.
    mutating func header(_ op: VsockOperation, guestCID: UInt64, bufferSize: UInt32, length: UInt32 = 0, flags: UInt32 = 0) -> VsockHeader {
        advertisedForward = forwarded
        owesCreditUpdate = false
        return VsockHeader(sourceCID: VsockHeader.hostCID, destinationCID: guestCID, sourcePort: hostPort, destinationPort: guestPort,
                           length: length, op: op, flags: flags, bufferAllocation: bufferSize, forwardCount: forwarded)
    }

    /// Sends waiting bytes to the host socket, as many as it takes; true when none is left.
    mutating func flush() throws(SystemError) -> Bool {
        while pendingOutbound > 0 {
            let start = outboundStart, socket = self.socket
            let result = outbound.withUnsafeBytes { raw in
                Result { () throws(SystemError) in try socket.sendAvailable(UnsafeRawBufferPointer(rebasing: raw[start...])) }
            }
            let n = try result.get()
            if n == 0 { break }
            outboundStart += n
            forwarded &+= UInt32(truncatingIfNeeded: n)
        }
        if pendingOutbound == 0 {
            outbound = []
            outboundStart = 0
            return true
        }
        if outboundStart >= 1 << 16 {
            outbound.removeFirst(outboundStart)
            outboundStart = 0
        }
        return false
    }
}
