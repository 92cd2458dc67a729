import Testing
import VirtioCore
import VirtioDevices
import VirtioTransport
import VirtioSystem

#if canImport(Glibc)
import Glibc
#endif

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
