import Testing
import VirtioCore
import VirtioDevices
import VirtioTransport
import VirtioSystem

#if canImport(Glibc)
import Glibc
#endif

@Suite("Vsock device (virtio-vsock): identity, packets, hostile headers")
struct VsockDeviceTests {
    typealias H = VsockHarness

    @Test("GHT-VSK-01: device ID 19, three queues, no device-type feature, guest_cid as le64 in the configuration space")
    func identity() throws {
        let h = try H()
        #expect(h.device.deviceID == 19 && h.device.queueCount == 3 && h.device.deviceFeatures.isEmpty)
        #expect(h.device.readConfig() == [3, 0, 0, 0, 0, 0, 0, 0])
        #expect(VsockConfigurationSpace(guestCID: 0x0102_0304_0506_0708).bytes == [8, 7, 6, 5, 4, 3, 2, 1])
    }

    @Test("GHT-VSK-02: the event queue's buffers stay with the driver; one handed over anyway completes empty")
    func eventQueue() throws {
        let h = try H()
        #expect(h.device.readyBuffers(queue: VsockDevice.eventQueue) == 0)
        let fragments = [h.region.range.slice(offset: 0, length: 8)]
        var batch = RequestBatch.testing(fragments: fragments, requests: [(0..<0, 0..<1)])
        h.device.process(queue: VsockDevice.eventQueue, batch: &batch)
        #expect(batch.usedLength(0) == 0)
    }

    @Test("GHT-VSK-03: the receive queue takes buffers only for packets waiting; the transmit queue takes every buffer")
    func receivePacing() throws {
        let h = try H()
        #expect(h.device.readyBuffers(queue: VsockDevice.receiveQueue) == 0)
        #expect(h.device.readyBuffers(queue: VsockDevice.transmitQueue) == nil)
        h.send(H.packet(.readWrite, guestPort: 1, hostPort: 2))
        #expect(h.device.readyBuffers(queue: VsockDevice.receiveQueue) == 1, "a reset is owed")
        _ = h.receive()
        #expect(h.device.readyBuffers(queue: VsockDevice.receiveQueue) == 0)
    }

    @Test("GHT-VSK-04: a receive buffer gets one whole packet (44-byte little-endian header, then payload) across descriptors; one smaller than a header completes empty and is counted")
    func receiveBuffer() throws {
        let h = try H()
        h.send(H.packet(.readWrite, guestPort: 0x0102_0304, hostPort: 0x0A0B_0C0D))
        let p = try #require(h.receive())
        #expect(p.header == VsockHeader(sourceCID: 2, destinationCID: 3, sourcePort: 0x0A0B_0C0D, destinationPort: 0x0102_0304, op: .reset))
        let raw = p.header.bytes
        #expect(raw.count == 44 && raw[0] == 2 && raw[8] == 3 && raw[16...19] == [0x0D, 0x0C, 0x0B, 0x0A] && raw[28] == 1 && raw[30] == 3)
        h.send(H.packet(.readWrite, guestPort: 5, hostPort: 6))
        let fragments = [h.region.range.slice(offset: 1 << 20, length: 43)]
        var batch = RequestBatch.testing(fragments: fragments, requests: [(0..<0, 0..<1)])
        h.device.process(queue: VsockDevice.receiveQueue, batch: &batch)
        #expect(batch.usedLength(0) == 0 && h.device.statistics.buffersTooSmall == 1)
    }

    @Test("GHT-VSK-05: the header is read wherever the driver split it; fewer than 44 readable bytes are dropped and counted; every transmit buffer completes with used length 0")
    func transmitHeader() throws {
        let h = try H()
        let listener = try h.listen(port: 9)
        defer { listener.close() }
        h.send(H.packet(.request, guestPort: 8, hostPort: 9), split: 5)
        #expect(h.receive()?.header.operation == .response)
        h.send(raw: Array(H.packet(.request, guestPort: 8, hostPort: 9).bytes.prefix(43)))
        #expect(h.device.statistics.faults[.shortHeader] == 1)
        #expect(h.receive() == nil, "nothing to answer")
    }

    @Test("GHT-VSK-06: a foreign src_cid is dropped unanswered; len beyond the chain, a dst_cid not the host's, a type not STREAM and an unknown op are answered with a reset, addresses swapped")
    func hostileHeaders() throws {
        let h = try H()
        var wrongSource = H.packet(.request, guestPort: 1, hostPort: 2)
        wrongSource.sourceCID = 4
        h.send(wrongSource)
        #expect(h.receive() == nil && h.device.statistics.faults[.wrongSourceCID] == 1)

        var longer = H.packet(.readWrite, guestPort: 1, hostPort: 2, length: 100)
        h.send(longer, [UInt8](repeating: 1, count: 99))
        #expect(h.receive()?.header.operation == .reset && h.device.statistics.faults[.lengthBeyondChain] == 1)
        longer.length = UInt32.max
        h.send(longer)
        #expect(h.receive()?.header.operation == .reset && h.device.statistics.faults[.lengthBeyondChain] == 2)

        var otherGuest = H.packet(.request, guestPort: 1, hostPort: 2)
        otherGuest.destinationCID = 7
        h.send(otherGuest)
        let reset = try #require(h.receive()).header
        #expect(reset.operation == .reset && reset.sourceCID == 7 && reset.destinationCID == 3 && reset.sourcePort == 2 && reset.destinationPort == 1)
        #expect(h.device.statistics.faults[.wrongDestinationCID] == 1)

        var seqpacket = H.packet(.request, guestPort: 1, hostPort: 2)
        seqpacket.type = 2
        h.send(seqpacket)
        #expect(h.receive()?.header.operation == .reset && h.device.statistics.faults[.unknownType] == 1)

        for op: UInt16 in [0, 8, 0xFFFF] {
            var unknown = H.packet(.request, guestPort: 1, hostPort: 2)
            unknown.op = op
            h.send(unknown)
            #expect(h.receive()?.header.operation == .reset)
        }
        #expect(h.device.statistics.faults[.unknownOperation] == 3)
        #expect(h.device.connectionCount == 0)
    }

    @Test("GHT-VSK-14: a packet for no open connection is answered with a reset; a reset for none is not answered")
    func unknownConnection() throws {
        let h = try H()
        for op: VsockOperation in [.response, .shutdown, .readWrite, .creditUpdate, .creditRequest] {
            h.send(H.packet(op, guestPort: 40, hostPort: 41))
            let reset = try #require(h.receive()).header
            #expect(reset.operation == .reset && reset.sourcePort == 41 && reset.destinationPort == 40)
        }
        h.send(H.packet(.reset, guestPort: 40, hostPort: 41))
        #expect(h.receive() == nil)
        #expect(h.device.statistics.faults[.unknownConnection] == 5)
    }

    @Test("GHT-VSK-15: resets owed for packets naming no connection are bounded; beyond the bound they are dropped and counted")
    func boundedResets() throws {
        let h = try H()
        for port in 0..<UInt32(VsockDevice.maxPendingResets + 10) { h.send(H.packet(.readWrite, guestPort: port, hostPort: 1)) }
        #expect(h.device.readyBuffers(queue: VsockDevice.receiveQueue) == VsockDevice.maxPendingResets)
        #expect(h.device.statistics.faults[.resetDropped] == 10)
    }

    @Test("GHT-VSK-16: at most maxConnections are open; a REQUEST beyond is reset and a host connection beyond is closed unanswered")
    func connectionBound() throws {
        let h = try H(maxConnections: 4)
        let listener = try h.listen(port: 7)
        defer { listener.close() }
        var hosts: [UnixSocket] = []
        for port in 1...4 as ClosedRange<UInt32> { hosts += [try #require(try h.connect(guestPort: port, hostPort: 7, listener: listener))] }
        h.send(H.packet(.request, guestPort: 5, hostPort: 7))
        #expect(h.receive()?.header.operation == .reset)
        #expect(h.device.statistics.faults[.tableFull] == 1 && h.device.connectionCount == 4)

        let client = try UnixSocket.connect(path: h.socketPath)
        try client.send(Array("CONNECT 99\n".utf8))
        #expect(try H.read(client, count: 1).isEmpty, "closed without an answer")
        #expect(h.device.statistics.faults[.tableFull] == 2)

        // A connection closed makes room again.
        h.send(H.packet(.reset, guestPort: 1, hostPort: 7))
        _ = try #require(try h.connect(guestPort: 6, hostPort: 7, listener: listener))
        #expect(h.device.connectionCount == 4)
    }

    @Test("GHT-VSK-17: RW before the guest accepted, RW after it shut down sending, RESPONSE on an established connection and a second REQUEST for an open one reset the connection")
    func unexpectedOperations() throws {
        let h = try H()
        let listener = try h.listen(port: 7)
        defer { listener.close() }
        for (i, bad) in [(VsockOperation.response, UInt32(0)), (.request, 0), (.readWrite, VsockHeader.shutdownSend)].enumerated() {
            let port = UInt32(100 + i)
            let host = try #require(try h.connect(guestPort: port, hostPort: 7, listener: listener))
            if bad.1 != 0 { h.send(H.packet(.shutdown, guestPort: port, hostPort: 7, flags: bad.1)) }
            h.send(H.packet(bad.0, guestPort: port, hostPort: 7, length: bad.0 == .readWrite ? 3 : 0), bad.0 == .readWrite ? [1, 2, 3] : [])
            let reset = h.awaitPacket("reset") { $0.operation == .reset }
            #expect(reset?.header.destinationPort == port)
            #expect(try H.read(host, count: 1).isEmpty, "the host program sees end of stream")
        }
        #expect(h.device.statistics.faults[.unexpectedOperation] == 3 && h.device.connectionCount == 0)

        // RW to a host-initiated connection the guest has not accepted yet.
        let client = try UnixSocket.connect(path: h.socketPath)
        try client.send(Array("CONNECT 55\n".utf8))
        let request = try #require(h.awaitPacket("REQUEST") { $0.operation == .request }).header
        h.send(H.packet(.readWrite, guestPort: 55, hostPort: request.sourcePort, length: 1), [9])
        #expect(h.awaitPacket("reset") { $0.operation == .reset } != nil)
        #expect(try H.read(client, count: 1).isEmpty)
        #expect(h.device.statistics.faults[.unexpectedOperation] == 4)
    }

    @Test("GHT-VSK-18: a device reset closes every connection (the host programs see end of stream) and drops every packet owed")
    func deviceReset() throws {
        let h = try H()
        let listener = try h.listen(port: 7)
        defer { listener.close() }
        let host = try #require(try h.connect(guestPort: 1, hostPort: 7, listener: listener))
        h.send(H.packet(.readWrite, guestPort: 50, hostPort: 51))
        h.device.reset()
        #expect(h.device.connectionCount == 0 && h.device.readyBuffers(queue: VsockDevice.receiveQueue) == 0)
        #expect(try H.read(host, count: 1).isEmpty)
    }
}
