import Testing
import VirtioCore
import VirtioDevices
import VirtioTransport
import VirtioSystem

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
