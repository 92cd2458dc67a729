import VirtioCore
import VirtioTransport
import VirtioSystem

// The transmit side: packets from the guest (VIRTIO 1.2 §5.10.6), checked before anything is
// done with them; every malformed or refused one is a typed outcome (``VsockFault``).

extension VsockTable {
    /// Handles one packet the guest transmitted.
    mutating func transmit(_ reader: inout FragmentReader) {
        // GHT-VSK-05: the 44-byte header, wherever the driver split it.
        guard reader.remaining >= VsockHeader.byteCount else {
            count(.shortHeader)
            return
        }
        // Copied once out of guest memory (no allocation per packet); decided on the copy.
        let h = withUnsafeTemporaryAllocation(byteCount: VsockHeader.byteCount, alignment: 8) { raw in
            _ = reader.read(into: raw)
            return VsockHeader(raw: UnsafeRawBufferPointer(raw))
        }
        if let fault = check(h, payloadAvailable: reader.remaining) {
            count(fault)
            guard fault != .wrongSourceCID else { return }
            // A packet that names an open connection but breaks the rules resets it.
            let key = VsockConnection.key(guestPort: h.sourcePort, hostPort: h.destinationPort)
            if fault == .lengthBeyondChain, connections[key] != nil { reset(key) } else { answerReset(h) }
            return
        }
        let key = VsockConnection.key(guestPort: h.sourcePort, hostPort: h.destinationPort)
        if h.operation == .request {
            connectToHost(h, key: key)
            return
        }
        guard var c = connections[key] else {
            // GHT-VSK-14: nothing open by these ports; a reset needs no answer.
            if h.operation != .reset {
                count(.unknownConnection)
                answerReset(h)
            }
            return
        }
        // GHT-VSK-09: every packet carries the guest's credit for this connection.
        c.peerBufferAllocation = h.bufferAllocation
        c.peerForwardCount = h.forwardCount
        switch h.operation! {
        case .response:
            guard c.state == .connecting else { return unexpected(key) }
            c.state = .established
            statistics.connectionsOpened += 1
            // GHT-VSK-12: the host program learns its port once the guest accepted.
            let line = Array("OK \(c.hostPort)\n".utf8)
            guard (try? line.withUnsafeBytes { try c.socket.sendAvailable($0) }) == line.count else { return reset(key) }
        case .reset:
            if c.state == .connecting { statistics.connectionsRefused += 1 } else { statistics.connectionsReset += 1 }
            return remove(key)
        case .shutdown:
            c.guestShutdown |= h.flags & (VsockHeader.shutdownReceive | VsockHeader.shutdownSend)
            if c.guestShutdown == VsockHeader.shutdownReceive | VsockHeader.shutdownSend {
                // GHT-VSK-10: both ways shut: the bytes still waiting go out, then the reset
                // the guest waits for.
                c.closing = true
                if c.pendingOutbound == 0 { return closed(key) }
            } else if c.guestShutdown & VsockHeader.shutdownSend != 0, c.pendingOutbound == 0 {
                try? c.socket.shutdownWriting()
            }
        case .readWrite:
            guard c.state == .established, c.guestShutdown & VsockHeader.shutdownSend == 0, !c.closing else { return unexpected(key) }
            // GHT-VSK-07: never more than the buffer advertised is held for the host.
            guard UInt64(c.received &- c.forwarded) + UInt64(h.length) <= UInt64(bufferSize) else {
                count(.creditExceeded)
                return reset(key)
            }
            guard forward(&c, &reader, Int(h.length)) else { return reset(key) }
        case .creditUpdate:
            break
        case .creditRequest:
            c.owesCreditUpdate = true
        case .request, .invalid:
            break
        }
        store(c)
    }

    /// The fault of a header, checked in this order (GHT-VSK-05, -06): nil when it is well formed.
    func check(_ h: VsockHeader, payloadAvailable: Int) -> VsockFault? {
        if h.sourceCID != guestCID { return .wrongSourceCID }
        if Int(h.length) > payloadAvailable { return .lengthBeyondChain }
        if h.destinationCID != VsockHeader.hostCID { return .wrongDestinationCID }
        if h.type != VsockHeader.typeStream { return .unknownType }
        if h.operation == nil { return .unknownOperation }
        return nil
    }

    private mutating func unexpected(_ key: UInt64) {
        count(.unexpectedOperation)
        reset(key)
    }

    /// The guest closed both ways and nothing waits for the host: the connection goes, with the
    /// reset that ends it in the guest.
    mutating func closed(_ key: UInt64) {
        guard var c = connections[key] else { return }
        owe(c.header(.reset, guestCID: guestCID, bufferSize: bufferSize))
        remove(key)
    }

    /// GHT-VSK-12: a guest's REQUEST to host port P connects to `PATH_P`.
    private mutating func connectToHost(_ h: VsockHeader, key: UInt64) {
        if connections[key] != nil {
            count(.unexpectedOperation)
            reset(key)
            return
        }
        guard connections.count < maxConnections else {
            // GHT-VSK-16
            count(.tableFull)
            answerReset(h)
            return
        }
        guard let socket = try? UnixSocket.connect(path: host.path(forPort: h.destinationPort)) else {
            statistics.connectionsRefused += 1
            answerReset(h)
            return
        }
        var c = VsockConnection(id: host.newToken(), guestPort: h.sourcePort, hostPort: h.destinationPort, socket: socket, state: .established)
        c.peerBufferAllocation = h.bufferAllocation
        c.peerForwardCount = h.forwardCount
        c.owesResponse = true
        keys[c.id] = key
        statistics.connectionsOpened += 1
        store(c)
    }

    /// Sends `length` payload bytes to the host socket, what it does not take now into the
    /// connection's buffer; false when the host socket failed (closed by the host program).
    private mutating func forward(_ c: inout VsockConnection, _ reader: inout FragmentReader, _ length: Int) -> Bool {
        c.received &+= UInt32(length)
        statistics.bytesToHost += UInt64(length)
        var sent = 0
        if c.pendingOutbound == 0 {
            let socket = c.socket
            var failed = false
            sent = reader.consume(upTo: length) { part in
                do { return try socket.sendAvailable(part) } catch {
                    failed = true
                    return 0
                }
            }
            if failed { return false }
            c.forwarded &+= UInt32(sent)
        }
        if sent < length {
            guard let rest = try? reader.readBytes(length - sent) else { return false }
            c.outbound.append(contentsOf: rest)
        }
        noteForwarded(&c)
        return true
    }

    /// GHT-VSK-09: the guest hears of freed buffer once a quarter of it is free again.
    func noteForwarded(_ c: inout VsockConnection) {
        if c.forwarded &- c.advertisedForward >= bufferSize / 4 { c.owesCreditUpdate = true }
    }
}
