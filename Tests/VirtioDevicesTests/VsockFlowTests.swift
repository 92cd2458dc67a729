import Testing
import VirtioCore
import VirtioDevices
import VirtioTransport

#if canImport(Glibc)
import Glibc
#endif

@Suite("Vsock device (virtio-vsock): connections and flow control")
struct VsockFlowTests {
    typealias H = VsockHarness

    @Test("GHT-VSK-12: a guest's REQUEST to host port P connects to PATH_P and is answered RESPONSE; with no listener there it is answered RST")
    func guestConnects() throws {
        let h = try H()
        h.send(H.packet(.request, guestPort: 1000, hostPort: 5000))
        let refused = try #require(h.receive()).header
        #expect(refused.operation == .reset && refused.destinationPort == 1000 && refused.sourcePort == 5000)
        #expect(h.device.statistics.connectionsRefused == 1)
        let listener = try h.listen(port: 5000)
        defer { listener.close() }
        h.send(H.packet(.request, guestPort: 1000, hostPort: 5000))
        let response = try #require(h.receive()).header
        #expect(response.operation == .response && response.sourceCID == 2 && response.destinationCID == 3)
        #expect(response.sourcePort == 5000 && response.destinationPort == 1000 && response.bufferAllocation == 64 * 1024)
        #expect(try listener.waitReadable(timeoutMilliseconds: 2000))
        #expect(h.device.statistics.connectionsOpened == 1 && h.device.connectionCount == 1)
    }

    @Test("GHT-VSK-13: a host program's CONNECT P on PATH becomes a REQUEST to guest port P from a host port of 2^30 or more; RESPONSE answers OK <port>, a guest's RST closes it unanswered, a malformed line is closed")
    func hostConnects() throws {
        let h = try H()
        let client = try UnixSocket.connect(path: h.socketPath)
        try client.send(Array("CONNECT 1234\n".utf8))
        let request = try #require(h.awaitPacket("REQUEST") { $0.operation == .request }).header
        #expect(request.destinationPort == 1234 && request.sourcePort >= 1 << 30 && request.destinationCID == 3 && request.sourceCID == 2)
        h.send(H.packet(.response, guestPort: 1234, hostPort: request.sourcePort))
        #expect(try H.read(client, count: "OK \(request.sourcePort)\n".utf8.count) == Array("OK \(request.sourcePort)\n".utf8))

        let refused = try UnixSocket.connect(path: h.socketPath)
        try refused.send(Array("CONNECT 99\n".utf8))
        let second = try #require(h.awaitPacket("REQUEST") { $0.operation == .request }).header
        #expect(second.sourcePort != request.sourcePort)
        h.send(H.packet(.reset, guestPort: 99, hostPort: second.sourcePort))
        #expect(try H.read(refused, count: 1).isEmpty)
        #expect(h.device.statistics.connectionsRefused == 1)
        #expect(h.device.connectionCount == 1)
    }

    @Test("GHT-VSK-13: a host-initiated connection the guest answers neither way within connectTimeout is given up: RST to the guest, the host program's socket closed")
    func unansweredRequest() throws {
        let h = try H(connectTimeout: .milliseconds(300))
        let client = try UnixSocket.connect(path: h.socketPath)
        try client.send(Array("CONNECT 1234\n".utf8))
        let request = try #require(h.awaitPacket("REQUEST") { $0.operation == .request }).header
        let reset = try #require(h.awaitPacket("RST") { $0.operation == .reset }).header
        #expect(reset.sourcePort == request.sourcePort && reset.destinationPort == 1234)
        #expect(try H.read(client, count: 1).isEmpty)
        #expect(h.device.connectionCount == 0 && h.device.statistics.connectionsRefused == 1)
        // The guest's late answer names no connection any more.
        h.send(H.packet(.response, guestPort: 1234, hostPort: request.sourcePort))
        #expect(h.receive()?.header.operation == .reset)
    }

    @Test("GHT-VSK-20: a CONNECT line longer than 32 bytes or not CONNECT <u32> is closed unanswered, and no REQUEST reaches the guest")
    func malformedConnect() throws {
        let h = try H()
        for line in ["CONNECT\n", "CONNECT x\n", "connect 5\n", "CONNECT 4294967296\n", "CONNECT " + String(repeating: "1", count: 40) + "\n"] {
            let client = try UnixSocket.connect(path: h.socketPath)
            try client.send(Array(line.utf8))
            #expect(try H.read(client, count: 1).isEmpty, "closed: \(line)")
        }
        #expect(h.receive() == nil && h.device.connectionCount == 0)
    }

    @Test("GHT-VSK-19: a full exchange both ways: the guest connects, data goes both ways in order and byte-exact, each side shuts down, and the connection ends with the guest's RST")
    func fullExchangeGuestInitiated() throws {
        let h = try H()
        let listener = try h.listen(port: 5000)
        defer { listener.close() }
        let host = try #require(try h.connect(guestPort: 1000, hostPort: 5000, listener: listener))
        try exchange(h, host: host, guestPort: 1000, hostPort: 5000, toHost: vsockPattern(150_000, seed: 1), toGuest: vsockPattern(100_000, seed: 2))
    }

    @Test("GHT-VSK-19: a full exchange when the host connects: CONNECT, OK, data both ways byte-exact, shutdowns")
    func fullExchangeHostInitiated() throws {
        let h = try H()
        let client = try UnixSocket.connect(path: h.socketPath)
        try client.send(Array("CONNECT 77\n".utf8))
        let request = try #require(h.awaitPacket("REQUEST") { $0.operation == .request }).header
        h.send(H.packet(.response, guestPort: 77, hostPort: request.sourcePort))
        let ok = Array("OK \(request.sourcePort)\n".utf8)
        #expect(try H.read(client, count: ok.count) == ok)
        try exchange(h, host: client, guestPort: 77, hostPort: request.sourcePort, toHost: vsockPattern(200_000, seed: 3), toGuest: vsockPattern(120_000, seed: 4))
    }

    /// Sends `toHost` from the guest and `toGuest` from the host program, then the host shuts
    /// down writing, then the guest both ways; checks every byte and the closing packets.
    private func exchange(_ h: H, host: UnixSocket, guestPort: UInt32, hostPort: UInt32, toHost: [UInt8], toGuest: [UInt8]) throws {
        try host.send(toGuest)
        try host.shutdownWriting()
        var received: [UInt8] = [], sawShutdown = false
        var forwarded: UInt32 = 0
        // The guest takes 16 KiB of credit and hands it back as it consumes.
        while !sawShutdown {
            guard let p = h.awaitPacket("host data", { _ in true }) else { break }
            switch p.header.operation {
            case .readWrite:
                #expect(p.payload.count <= 16384)
                received += p.payload
                forwarded &+= UInt32(p.payload.count)
                h.send(H.packet(.creditUpdate, guestPort: guestPort, hostPort: hostPort, credit: 16384, forwarded: forwarded))
            case .shutdown:
                #expect(p.header.flags == VsockHeader.shutdownSend)
                sawShutdown = true
            default: break
            }
        }
        #expect(received == toGuest, "host to guest: \(received.count) of \(toGuest.count) bytes, in order")
        var offset = 0
        var atHost: [UInt8] = []
        while offset < toHost.count {
            let n = min(8192, toHost.count - offset)
            h.send(H.packet(.readWrite, guestPort: guestPort, hostPort: hostPort, length: n, credit: 16384, forwarded: forwarded), Array(toHost[offset..<offset + n]))
            offset += n
            atHost += try H.read(host, count: n)
        }
        #expect(atHost == toHost, "guest to host: \(atHost.count) bytes, in order")
        h.send(H.packet(.shutdown, guestPort: guestPort, hostPort: hostPort, flags: VsockHeader.shutdownSend | VsockHeader.shutdownReceive))
        #expect(h.awaitPacket("RST") { $0.operation == .reset }?.header.destinationPort == guestPort)
        #expect(try H.read(host, count: 1).isEmpty, "the host program sees end of stream")
        #expect(h.device.connectionCount == 0)
        #expect(h.device.statistics.faults.isEmpty)
    }
}

@Suite("Vsock device (virtio-vsock): credit and shutdown")
struct VsockCreditTests {
    typealias H = VsockHarness

    @Test("GHT-VSK-07: RW beyond the buffer the device advertised resets the connection; up to it, nothing is lost while the host program does not read")
    func guestExceedsCredit() throws {
        let h = try H(bufferSize: 64 * 1024)
        let listener = try h.listen(port: 7)
        defer { listener.close() }
        let host = try #require(try h.connect(guestPort: 1, hostPort: 7, listener: listener))
        h.send(H.packet(.readWrite, guestPort: 1, hostPort: 7, length: 64 * 1024 + 1), [UInt8](repeating: 1, count: 64 * 1024 + 1))
        #expect(h.awaitPacket("RST") { $0.operation == .reset } != nil)
        #expect(h.device.statistics.faults[.creditExceeded] == 1 && h.device.connectionCount == 0)
        #expect(try H.read(host, count: 1).isEmpty)

        // A guest that ignores the credit while the host program reads nothing: the device holds
        // at most the advertised buffer beyond what the host socket took, then resets.
        let stalled = try #require(try h.connect(guestPort: 2, hostPort: 7, listener: listener))
        var accepted = 0
        while h.device.connectionCount == 1 && accepted < 64 << 20 {
            h.send(H.packet(.readWrite, guestPort: 2, hostPort: 7, length: 16384), vsockPattern(16384, seed: accepted / 16384))
            accepted += 16384
        }
        #expect(h.device.connectionCount == 0, "reset after \(accepted) bytes")
        #expect(h.device.statistics.faults[.creditExceeded] == 2)
        let taken = try H.read(stalled, count: accepted)
        #expect(taken.count < accepted && taken.count >= accepted - 16384 - 64 * 1024, "what the device took reached the host")
    }

    @Test("GHT-VSK-08: the guest never gets more payload than buf_alloc - (tx_cnt - fwd_cnt); a fwd_cnt ahead of what was sent gives no credit")
    func guestCreditRespected() throws {
        let h = try H()
        let listener = try h.listen(port: 7)
        defer { listener.close() }
        let host = try #require(try h.connect(guestPort: 1, hostPort: 7, listener: listener, credit: 1000))
        try host.send(vsockPattern(5000))
        var got: [UInt8] = []
        while got.count < 1000, let p = h.awaitPacket("RW", { $0.operation == .readWrite }) { got += p.payload }
        usleep(50_000)
        #expect(got.count == 1000 && h.receive() == nil, "no more than the credit")
        // A lying fwd_cnt (beyond what was sent) leaves the credit at nothing.
        h.send(H.packet(.creditUpdate, guestPort: 1, hostPort: 7, credit: 1000, forwarded: 5000))
        usleep(50_000)
        #expect(h.receive() == nil)
        // The guest consumed 600: 600 more may come.
        h.send(H.packet(.creditUpdate, guestPort: 1, hostPort: 7, credit: 1000, forwarded: 600))
        while got.count < 1600, let p = h.awaitPacket("RW", { $0.operation == .readWrite }) { got += p.payload }
        usleep(50_000)
        #expect(got.count == 1600 && h.receive() == nil)
        // Small receive buffers cut packets, never the stream.
        h.send(H.packet(.creditUpdate, guestPort: 1, hostPort: 7, credit: 100_000, forwarded: 1600))
        while got.count < 5000, let p = h.awaitPacket("RW", capacity: VsockHeader.byteCount + 100, { $0.operation == .readWrite }) {
            #expect(p.payload.count <= 100)
            got += p.payload
        }
        #expect(got == vsockPattern(5000))
    }

    @Test("GHT-VSK-09: every packet to the guest advertises buf_alloc and fwd_cnt; CREDIT_REQUEST is answered CREDIT_UPDATE; a quarter of the buffer forwarded is announced unasked")
    func creditUpdates() throws {
        let h = try H(bufferSize: 64 * 1024)
        let listener = try h.listen(port: 7)
        defer { listener.close() }
        let host = try #require(try h.connect(guestPort: 1, hostPort: 7, listener: listener))
        h.send(H.packet(.readWrite, guestPort: 1, hostPort: 7, length: 1000), vsockPattern(1000))
        #expect(try H.read(host, count: 1000).count == 1000)
        #expect(h.receive() == nil, "less than a quarter forwarded: no update")
        h.send(H.packet(.creditRequest, guestPort: 1, hostPort: 7))
        let update = try #require(h.receive()).header
        #expect(update.operation == .creditUpdate && update.bufferAllocation == 64 * 1024 && update.forwardCount == 1000)
        h.send(H.packet(.readWrite, guestPort: 1, hostPort: 7, length: 16384), vsockPattern(16384))
        let unasked = try #require(h.awaitPacket("CREDIT_UPDATE") { $0.operation == .creditUpdate }).header
        #expect(unasked.forwardCount == 17384)
        try host.send([1, 2, 3])
        let data = try #require(h.awaitPacket("RW") { $0.operation == .readWrite }).header
        #expect(data.bufferAllocation == 64 * 1024 && data.forwardCount == 17384)
    }

    @Test("GHT-VSK-10: the guest's SHUTDOWN(SEND) ends the host program's stream after every byte; SHUTDOWN both ways sends what waits, closes the host socket and resets the guest's end")
    func guestShutdown() throws {
        let h = try H(bufferSize: 1 << 20)
        let listener = try h.listen(port: 7)
        defer { listener.close() }
        let host = try #require(try h.connect(guestPort: 1, hostPort: 7, listener: listener))
        h.send(H.packet(.readWrite, guestPort: 1, hostPort: 7, length: 3000), vsockPattern(3000))
        h.send(H.packet(.shutdown, guestPort: 1, hostPort: 7, flags: VsockHeader.shutdownSend))
        #expect(try H.read(host, count: 4000) == vsockPattern(3000), "every byte, then end of stream")
        try host.send([7, 8])
        #expect(h.awaitPacket("RW") { $0.operation == .readWrite }?.payload == [7, 8], "the other way stays open")

        // Both ways with bytes still waiting for a host program that reads late (more than its
        // socket holds): they go out first, then the host socket closes and the guest's RST.
        let late = try #require(try h.connect(guestPort: 2, hostPort: 7, listener: listener))
        let bulk = vsockPattern(600_000, seed: 5)
        for offset in stride(from: 0, to: bulk.count, by: 60_000) {
            h.send(H.packet(.readWrite, guestPort: 2, hostPort: 7, length: 60_000), Array(bulk[offset..<offset + 60_000]))
        }
        h.send(H.packet(.shutdown, guestPort: 2, hostPort: 7, flags: VsockHeader.shutdownSend | VsockHeader.shutdownReceive))
        #expect(h.device.connectionCount == 2, "still sending to the host program")
        #expect(try H.read(late, count: bulk.count + 1) == bulk)
        #expect(h.awaitPacket("RST") { $0.operation == .reset }?.header.destinationPort == 2)
        #expect(h.device.connectionCount == 1 && h.device.statistics.faults.isEmpty)
    }

    @Test("GHT-VSK-11: the host program's end of stream is SHUTDOWN(SEND) after its last byte; a host program gone mid-stream is the guest's RST, and the others go on")
    func hostShutdown() throws {
        let h = try H()
        let listener = try h.listen(port: 7)
        defer { listener.close() }
        let first = try #require(try h.connect(guestPort: 1, hostPort: 7, listener: listener))
        let second = try #require(try h.connect(guestPort: 2, hostPort: 7, listener: listener))
        try first.send(vsockPattern(2000))
        try first.shutdownWriting()
        var got: [UInt8] = []
        let shutdown = h.awaitPacket("SHUTDOWN", skipped: { if $0.operation == .readWrite { got += $1 } }) { $0.operation == .shutdown }
        #expect(shutdown?.header.flags == VsockHeader.shutdownSend && got == vsockPattern(2000))
        // The guest still sends; the host program reads it.
        h.send(H.packet(.readWrite, guestPort: 1, hostPort: 7, length: 5), [1, 2, 3, 4, 5])
        #expect(try H.read(first, count: 5) == [1, 2, 3, 4, 5])

        // The second host program goes away; the guest's next bytes are answered RST.
        second.close()
        usleep(20_000)
        h.send(H.packet(.readWrite, guestPort: 2, hostPort: 7, length: 5), [1, 2, 3, 4, 5])
        h.send(H.packet(.readWrite, guestPort: 2, hostPort: 7, length: 5), [1, 2, 3, 4, 5])
        let reset = h.awaitPacket("RST") { $0.operation == .reset }
        #expect(reset?.header.destinationPort == 2)
        h.send(H.packet(.readWrite, guestPort: 1, hostPort: 7, length: 2), [9, 9])
        #expect(try H.read(first, count: 2) == [9, 9], "the other connection goes on")
        #expect(h.device.connectionCount == 1)
    }
}
