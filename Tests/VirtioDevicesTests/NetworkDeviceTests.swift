import Synchronization
import Testing
import VirtioCore
import VirtioDevices
import VirtioTransport

#if canImport(Glibc)
import Glibc
#endif

/// The devices a back-end made, one per connection, in order.
final class MadeDevices: Sendable {
    let list = Mutex<[NetworkDevice]>([])
}

/// A net back-end (one switch) and the devices it made, one per connection, in order.
final class NetworkFixture {
    let socketPath = "/tmp/vg-net-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
    let networkSwitch: NetworkSwitch
    let devices = MadeDevices()
    let backEnd: BackEnd

    init(_ networkSwitch: NetworkSwitch = NetworkSwitch(portQueueLimit: 256)) throws {
        self.networkSwitch = networkSwitch
        let devices = self.devices
        backEnd = try BackEnd(socketPath: socketPath) {
            let device = NetworkDevice(switch: networkSwitch)
            devices.list.withLock { $0.append(device) }
            return device
        }
        backEnd.start()
    }

    deinit { backEnd.stop() }

    func guest(receiveBuffers: Int = 64) throws -> NetworkFrontEnd {
        try NetworkFrontEnd(socketPath: socketPath, receiveBuffers: receiveBuffers)
    }

    func device(_ i: Int) -> NetworkDevice { devices.list.withLock { $0[i] } }

    /// An Ethernet frame of `length` bytes (at least 14).
    static func frame(to destination: EthernetAddress, from source: EthernetAddress, length: Int = 64, fill: UInt8 = 0x5a) -> [UInt8] {
        destination.array + source.array + [0x88, 0xb5] + [UInt8](repeating: fill, count: length - 14)
    }

    /// Every frame `guest` receives until `count` arrived or a quiet `milliseconds` passed.
    static func collect(_ guest: NetworkFrontEnd, count: Int, milliseconds: Int32 = 300) throws -> [[UInt8]] {
        var frames: [[UInt8]] = []
        while frames.count < count {
            let more = try guest.receive(timeoutMilliseconds: milliseconds)
            if more.isEmpty { break }
            frames += more
        }
        return frames
    }
}

@Suite("virtio-net device and switch", .serialized)
struct NetworkDeviceTests {
    @Test("GHT-NET-05: the configuration space offers a distinct MAC per port and the link up")
    func configuration() throws {
        let f = try NetworkFixture()
        let a = try f.guest(), b = try f.guest()
        defer { a.close(); b.close() }
        #expect(a.mac != b.mac)
        #expect(a.mac == f.device(0).mac)
        let config = try a.frontEnd.readConfig(size: NetworkConfigurationSpace.byteCount)
        #expect(Array(config[6..<8]) == [1, 0])
        #expect(a.frontEnd.features.isSuperset(of: [.networkMAC, .networkStatus]))
    }

    @Test("GHT-NET-03: broadcast goes to every other port, never back; a port's address gets unicast only, from the start; an unknown one floods")
    func switching() throws {
        let f = try NetworkFixture()
        let a = try f.guest(), b = try f.guest(), c = try f.guest()
        defer { a.close(); b.close(); c.close() }
        let hello = NetworkFixture.frame(to: .broadcast, from: a.mac, fill: 1)
        try a.send(hello)
        #expect(try NetworkFixture.collect(b, count: 1) == [hello])
        #expect(try NetworkFixture.collect(c, count: 1) == [hello])
        #expect(try a.receive(timeoutMilliseconds: 100).isEmpty, "no frame goes back to its sender")
        // b has not sent yet, but its address is its own from the start: a frame to it is unicast.
        let early = NetworkFixture.frame(to: b.mac, from: a.mac, fill: 2)
        try a.send(early)
        #expect(try NetworkFixture.collect(b, count: 1) == [early])
        #expect(try c.receive(timeoutMilliseconds: 100).isEmpty, "b's address is known before b sends")
        let unknown = NetworkFixture.frame(to: EthernetAddress(0x02, 0, 0, 0, 0, 7), from: a.mac, fill: 5)
        try a.send(unknown)
        #expect(try NetworkFixture.collect(b, count: 1) == [unknown], "unknown unicast floods")
        #expect(try NetworkFixture.collect(c, count: 1) == [unknown])
        try b.send(NetworkFixture.frame(to: a.mac, from: b.mac, fill: 3))
        #expect(try NetworkFixture.collect(a, count: 1).count == 1)
        #expect(try c.receive(timeoutMilliseconds: 100).isEmpty, "a's address is learned: c does not see b's reply")
        let unicast = NetworkFixture.frame(to: b.mac, from: a.mac, length: 1514, fill: 4)
        try a.send(unicast)
        #expect(try NetworkFixture.collect(b, count: 1) == [unicast])
        #expect(try c.receive(timeoutMilliseconds: 100).isEmpty)
        #expect(f.device(0).statistics.framesSent == 4)
        #expect(f.device(1).statistics.framesReceived == 4)
    }

    @Test("GHT-NET-02: receive buffers stay with the driver until a frame arrives; each frame takes one buffer")
    func pacedReceive() throws {
        let f = try NetworkFixture()
        let a = try f.guest(), b = try f.guest(receiveBuffers: 4)
        defer { a.close(); b.close() }
        #expect(try b.receive(timeoutMilliseconds: 200).isEmpty, "no frame: no buffer is used")
        #expect(f.device(1).statistics.framesReceived == 0)
        for i in 0..<10 { try a.send(NetworkFixture.frame(to: b.mac, from: a.mac, fill: UInt8(i))) }
        let frames = try NetworkFixture.collect(b, count: 10)
        #expect(frames.map { $0[20] } == (0..<10).map(UInt8.init), "in order, none lost, through 4 buffers reposted")
    }

    @Test("GHT-NET-01, GHT-NET-04: malformed transmit buffers are counted and dropped; a full port queue drops only that port's frames")
    func hostileInput() throws {
        let f = try NetworkFixture()
        let a = try f.guest(), b = try f.guest()
        // c posts no receive buffer at all.
        var configuration = FrontEndConfiguration()
        configuration.queueCount = 2
        let c = try FrontEnd.connect(socketPath: f.socketPath, configuration: configuration)
        defer { a.close(); b.close(); c.close() }
        let tx = a.frontEnd.queues[NetworkDevice.transmitQueue]
        for bytes in [[UInt8](repeating: 0, count: 5), [UInt8](repeating: 0, count: 25), [UInt8](repeating: 0, count: 12 + 1519)] {
            try tx.submit(bytes, replyCapacity: 0)
            try tx.publish()
            _ = try tx.waitForCompletions()
        }
        #expect(f.device(0).statistics.malformed == 3)
        #expect(f.device(0).statistics.framesSent == 0)
        for i in 0..<300 { try a.send(NetworkFixture.frame(to: f.device(2).mac, from: a.mac, fill: UInt8(truncatingIfNeeded: i))) }
        #expect(f.device(2).statistics.droppedQueueFull == 44, "c holds 256 frames and drops the rest")
        for i in 0..<100 { try a.send(NetworkFixture.frame(to: b.mac, from: a.mac, fill: UInt8(truncatingIfNeeded: i))) }
        #expect(try NetworkFixture.collect(b, count: 100).count == 100, "b keeps up and loses nothing")
    }

    @Test("GHT-NET-07: a guest sending from ever new source addresses replaces its own table entries; the table stays bounded and the other ports' entries stay")
    func addressTableBound() throws {
        let f = try NetworkFixture(NetworkSwitch(lockedPorts: false))
        let a = try f.guest(), b = try f.guest()
        defer { a.close(); b.close() }
        try b.send(NetworkFixture.frame(to: .broadcast, from: b.mac))
        for i in 0..<300 {
            try a.send(NetworkFixture.frame(to: .broadcast, from: EthernetAddress(0x02, 0, 0, 0, UInt8(i >> 8), UInt8(i & 0xff))))
        }
        #expect(f.networkSwitch.learnedAddressCount == 64)
        _ = try NetworkFixture.collect(b, count: 300)
        // b's own entry survived a's churn: a frame to b is unicast, c would not see it.
        let c = try f.guest()
        defer { c.close() }
        try a.send(NetworkFixture.frame(to: b.mac, from: a.mac, fill: 9))
        #expect(try NetworkFixture.collect(b, count: 1).last?[20] == 9)
        #expect(try c.receive(timeoutMilliseconds: 100).isEmpty)
    }

    @Test("GHT-NET-02: a receive buffer smaller than header and frame completes empty and the frame is counted as dropped")
    func smallBuffer() throws {
        let f = try NetworkFixture()
        let a = try f.guest()
        var configuration = FrontEndConfiguration()
        configuration.queueCount = 2
        let c = try FrontEnd.connect(socketPath: f.socketPath, configuration: configuration)
        defer { a.close(); c.close() }
        let rx = c.queues[NetworkDevice.receiveQueue]
        try rx.submit([], replyCapacity: 40)
        try rx.publish()
        try a.send(NetworkFixture.frame(to: .broadcast, from: a.mac, length: 60))
        let done = try rx.waitForCompletions()
        #expect(done.count == 1 && done[0].reply.isEmpty)
        #expect(f.device(1).statistics.droppedBufferTooSmall == 1)
    }

    @Test("GHT-NET-06: ARP and ping between two front-ends through the switch, answered by the IPv4 responder")
    func arpAndPing() throws {
        let f = try NetworkFixture()
        let a = try f.guest(), b = try f.guest()
        defer { a.close(); b.close() }
        let responder = IPv4Responder(mac: b.mac, address: [10, 0, 2, 2])
        let arpRequest = EthernetAddress.broadcast.array + a.mac.array + [0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]
            + a.mac.array + [10, 0, 2, 15] + [0, 0, 0, 0, 0, 0] + [10, 0, 2, 2]
        try a.send(arpRequest)
        let request = try #require(try NetworkFixture.collect(b, count: 1).first)
        guard case .arpReply(let reply)? = responder.answer(request) else { Issue.record("no ARP reply"); return }
        try b.send(reply)
        let got = try #require(try NetworkFixture.collect(a, count: 1).first)
        #expect(Array(got[0..<6]) == a.mac.array && Array(got[22..<28]) == b.mac.array && Array(got[28..<32]) == [10, 0, 2, 2])
        // An ICMP echo request with a valid IPv4 header checksum.
        var ip: [UInt8] = [0x45, 0, 0, 28 + 8, 0, 1, 0, 0, 64, 1, 0, 0, 10, 0, 2, 15, 10, 0, 2, 2]
        let sum = IPv4Responder.checksum(ip[...])
        ip[10] = UInt8(sum >> 8); ip[11] = UInt8(sum & 0xff)
        var icmp: [UInt8] = [8, 0, 0, 0, 0x12, 0x34, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8]
        let icmpSum = IPv4Responder.checksum(icmp[...])
        icmp[2] = UInt8(icmpSum >> 8); icmp[3] = UInt8(icmpSum & 0xff)
        ip[3] = UInt8(20 + icmp.count)
        let fixed = IPv4Responder.checksum({ var h = ip; h[10] = 0; h[11] = 0; return h }()[...])
        ip[10] = UInt8(fixed >> 8); ip[11] = UInt8(fixed & 0xff)
        try a.send(b.mac.array + a.mac.array + [0x08, 0x00] + ip + icmp)
        let ping = try #require(try NetworkFixture.collect(b, count: 1).first)
        guard case .echoReply(let pong)? = responder.answer(ping) else { Issue.record("no echo reply"); return }
        try b.send(pong)
        let answer = try #require(try NetworkFixture.collect(a, count: 1).first)
        #expect(answer[34] == 0, "ICMP echo reply")
        #expect(Array(answer[26..<30]) == [10, 0, 2, 2] && Array(answer[30..<34]) == [10, 0, 2, 15])
        #expect(IPv4Responder.checksum(answer[14..<34]) == 0, "IPv4 header checksum verifies")
        #expect(IPv4Responder.checksum(answer[34...]) == 0, "ICMP checksum verifies")
        #expect(Array(answer[42...]) == Array(icmp[8...]), "the payload comes back")
        #expect(responder.answer(arpRequest.map { $0 } .enumerated().map { $0.offset == 41 ? 9 : $0.element }) == nil, "ARP for another address")
    }
}
