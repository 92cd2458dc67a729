import VirtioCore
import VirtioTransport
import VirtioSystem

/// The connections of one ``VsockDevice`` and the packets owed to its guest; always used under
/// the device's lock, from the queue workers and the host thread.
struct VsockTable {
    let guestCID: UInt64
    let bufferSize: UInt32
    let maxConnections: Int
    let host: VsockHost
    var connections: [UInt64: VsockConnection] = [:]
    /// Poller token to table key.
    var keys: [UInt64: UInt64] = [:]
    /// Keys of connections with a packet for the guest, in the order they got one.
    var ready: [UInt64] = []
    var readyStart = 0
    /// Resets for packets that named no open connection (bounded, GHT-VSK-15).
    var resets: [VsockHeader] = []
    var nextLocalPort: UInt32 = 1 << 30
    var statistics = VsockDevice.Statistics()
    /// Header and payload of the packet being built (allocated once).
    var scratch = [UInt8](repeating: 0, count: VsockHeader.byteCount + VsockDevice.maxPayload)

    init(guestCID: UInt64, bufferSize: UInt32, maxConnections: Int, host: VsockHost) {
        self.guestCID = guestCID
        self.bufferSize = bufferSize
        self.maxConnections = maxConnections
        self.host = host
    }

    /// Packets the guest can be given now (at least; a connection with data may fill several
    /// buffers, and the queue asks again after each batch).
    var packetsWaiting: Int { resets.count + ready.count - readyStart }

    mutating func count(_ fault: VsockFault) { statistics.faults[fault, default: 0] += 1 }

    /// Puts `c` back in the table, in the ready list if it has a packet, and tells the poller
    /// what to report for its socket.
    mutating func store(_ c: VsockConnection) {
        var c = c
        if c.hasPacket && !c.queued {
            c.queued = true
            ready.append(c.key)
        }
        let wanted = c.wantedInterest
        if wanted != c.interest {
            do {
                if wanted.isEmpty {
                    try host.poller.remove(c.socket.fd)
                } else if c.interest.isEmpty {
                    try host.poller.add(c.socket.fd, token: c.id, interest: wanted)
                } else {
                    try host.poller.modify(c.socket.fd, token: c.id, interest: wanted)
                }
                c.interest = wanted
            } catch {
                // Only a socket closed under us fails here; reading or writing it reports that.
                c.interest = []
            }
        }
        connections[c.key] = c
    }

    /// Removes connection `key`, closing its host socket (the host program sees end of stream).
    mutating func remove(_ key: UInt64) {
        guard let c = connections.removeValue(forKey: key) else { return }
        keys[c.id] = nil
        c.socket.close()   // leaves the poller with it
    }

    /// Removes connection `key` and owes the guest a RST for it.
    mutating func reset(_ key: UInt64) {
        guard var c = connections[key] else { return }
        if c.state == .established { statistics.connectionsReset += 1 }
        owe(c.header(.reset, guestCID: guestCID, bufferSize: bufferSize))
        remove(key)
    }

    /// Owes the guest `header` (a reset with no connection behind it).
    mutating func owe(_ header: VsockHeader) {
        guard resets.count < VsockDevice.maxPendingResets else {
            count(.resetDropped)
            return
        }
        resets.append(header)
    }

    /// The reset answering `h`: its addresses swapped.
    mutating func answerReset(_ h: VsockHeader) {
        guard h.operation != .reset else { return }   // never a reset for a reset
        owe(VsockHeader(sourceCID: h.destinationCID, destinationCID: h.sourceCID, sourcePort: h.destinationPort,
                        destinationPort: h.sourcePort, op: .reset))
    }

    mutating func closeAll() {
        for key in Array(connections.keys) { remove(key) }
        ready = []
        readyStart = 0
        resets = []
    }

    private mutating func popReady() -> UInt64? {
        guard readyStart < ready.count else { return nil }
        let key = ready[readyStart]
        readyStart += 1
        if readyStart == ready.count || readyStart >= 1024 {
            ready.removeFirst(readyStart)
            readyStart = 0
        }
        return key
    }

    /// Writes the next packet for the guest into `writer` (nothing when none is owed).
    mutating func nextPacket(into writer: inout FragmentWriter) {
        guard writer.capacity >= VsockHeader.byteCount else {
            statistics.buffersTooSmall += 1
            return
        }
        while true {
            if !resets.isEmpty {
                emit(resets.removeFirst(), payload: 0, into: &writer)
                return
            }
            guard let key = popReady() else { return }
            guard var c = connections[key] else { continue }
            c.queued = false
            let packet = next(&c, room: writer.capacity - VsockHeader.byteCount)
            if connections[key] != nil { store(c) }
            if let (h, payload) = packet {
                emit(h, payload: payload, into: &writer)
                return
            }
        }
    }

    private mutating func emit(_ h: VsockHeader, payload: Int, into writer: inout FragmentWriter) {
        scratch.withUnsafeMutableBytes { raw in
            h.store(into: raw)
            writer.write(UnsafeRawBufferPointer(rebasing: raw[0..<(VsockHeader.byteCount + payload)]))
        }
    }

    /// The next packet of connection `c` (its payload already in `scratch` after the header),
    /// or nil; GHT-VSK-08: never more payload than the guest's credit.
    private mutating func next(_ c: inout VsockConnection, room: Int) -> (VsockHeader, Int)? {
        if c.owesRequest {
            c.owesRequest = false
            return (c.header(.request, guestCID: guestCID, bufferSize: bufferSize), 0)
        }
        if c.owesResponse {
            c.owesResponse = false
            return (c.header(.response, guestCID: guestCID, bufferSize: bufferSize), 0)
        }
        if c.hostReadable && c.canSendData {
            let limit = min(Int(c.peerCredit), room, VsockDevice.maxPayload)
            if limit > 0 {
                let socket = c.socket
                let result = scratch.withUnsafeMutableBytes { raw -> Result<Int?, SystemError> in
                    let payload = UnsafeMutableRawBufferPointer(rebasing: raw[VsockHeader.byteCount..<(VsockHeader.byteCount + limit)])
                    return Result { () throws(SystemError) in try socket.receiveAvailable(into: payload) }
                }
                switch result {
                case .success(let n?) where n > 0:
                    c.sent &+= UInt32(n)
                    statistics.bytesToGuest += UInt64(n)
                    return (c.header(.readWrite, guestCID: guestCID, bufferSize: bufferSize, length: UInt32(n)), n)
                case .success(nil):
                    c.hostReadable = false   // read to empty: the poller watches it again
                case .success:
                    // GHT-VSK-11: the host program's end of stream is the guest's SHUTDOWN(SEND).
                    c.hostReadable = false
                    c.hostEnded = true
                    c.owesShutdown = true
                case .failure:
                    reset(c.key)
                    return nil
                }
            }
        }
        if c.owesShutdown {
            c.owesShutdown = false
            return (c.header(.shutdown, guestCID: guestCID, bufferSize: bufferSize, flags: VsockHeader.shutdownSend), 0)
        }
        if c.owesCreditUpdate {
            return (c.header(.creditUpdate, guestCID: guestCID, bufferSize: bufferSize), 0)
        }
        return nil
    }
}
