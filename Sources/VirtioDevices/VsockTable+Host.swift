import VirtioCore
import VirtioTransport
import VirtioSystem

// The host side of the connections: readiness from ``VsockHost``'s thread and host-initiated
// connections.

extension VsockTable {
    /// The socket of connection `event.token` is ready; true when the guest has a new packet.
    mutating func hostEvent(_ event: PollEvent) -> Bool {
        guard let key = keys[event.token], var c = connections[key] else { return false }
        if event.isWritable || (event.isHangup || event.isError) && c.pendingOutbound > 0 {
            do {
                if try c.flush() {
                    if c.closing { closed(key); return true }
                    if c.guestShutdown & VsockHeader.shutdownSend != 0 { try? c.socket.shutdownWriting() }
                }
            } catch {
                reset(key)
                return true
            }
            noteForwarded(&c)
        }
        if event.isReadable || event.isHangup || event.isError { c.hostReadable = true }
        // A hung-up socket is reported on every wait: it leaves the poller until the device
        // wants something of it again (``VsockConnection/wantedInterest``).
        if event.isHangup || event.isError, c.interest.contains(.readable) == false, c.pendingOutbound == 0 {
            try? host.poller.remove(c.socket.fd)
            c.interest = []
        }
        store(c)
        return c.hasPacket
    }

    /// GHT-VSK-13: a host program's `CONNECT port`: a REQUEST to the guest's `port` from a new
    /// host port; false when the table is full.
    mutating func connectFromHost(_ socket: UnixSocket, guestPort: UInt32, token: UInt64) -> Bool {
        guard connections.count < maxConnections else {
            count(.tableFull)
            return false
        }
        var key: UInt64
        repeat {
            key = VsockConnection.key(guestPort: guestPort, hostPort: nextLocalPort)
            nextLocalPort = nextLocalPort == UInt32.max ? 1 << 30 : nextLocalPort + 1
        } while connections[key] != nil
        var c = VsockConnection(id: token, guestPort: guestPort, hostPort: UInt32(truncatingIfNeeded: key), socket: socket, state: .connecting)
        c.owesRequest = true
        c.requestedAt = .now
        keys[token] = key
        store(c)
        return true
    }
}

extension VsockTable {
    /// GHT-VSK-13: host-initiated connections the guest answered neither way within `timeout`
    /// are given up: the guest gets a RST for the REQUEST, the host program's socket closes.
    /// True when a reset became owed.
    mutating func expireRequests(olderThan timeout: Duration) -> Bool {
        let now = ContinuousClock.now
        let stale = connections.values.filter { $0.state == .connecting && $0.requestedAt.map { now - $0 >= timeout } == true }
        for c in stale {
            statistics.connectionsRefused += 1
            reset(c.key)
        }
        return !stale.isEmpty
    }
}
