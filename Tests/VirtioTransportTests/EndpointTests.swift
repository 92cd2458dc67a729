import Testing
import VirtioCore
import VirtioDevices
import VirtioGrants
import VirtioTransport

#if canImport(Glibc)
import Glibc
#endif

/// A unique socket path under /tmp.
func temporarySocketPath(_ tag: String) -> String {
    "/tmp/vg-\(tag)-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
}

@Suite("Front-end and back-end over a unix socket", .tags(.transport), .serialized)
struct EndpointTests {
    /// Streams `count` requests through `frontEnd` and checks every reply byte for byte.
    static func stream(_ frontEnd: FrontEnd, count: Int, queue: Int = 0, seed: UInt64 = 1) throws {
        let q = frontEnd.queues[queue]
        var expected: [UInt64: [UInt8]] = [:]
        var sent = 0, received = 0
        var state = seed | 1
        while received < count {
            while sent < count && q.freeCount > 0 {
                state = state &* 6364136223846793005 &+ 1442695040888963407
                let length = Int(state >> 40) % 9000 + 1
                let bytes = (0..<length).map { UInt8(truncatingIfNeeded: (UInt64($0) &* 31) ^ state) }
                let token = try q.submit(bytes, replyCapacity: 8 + length, parts: Int(state >> 20) % 4 + 1)
                expected[token] = bytes
                sent += 1
            }
            try q.publish()
            for c in try q.waitForCompletions() {
                let removed = expected.removeValue(forKey: c.token)
                let bytes = try #require(removed)
                let sum = c.reply.prefix(8).reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
                #expect(sum == ChecksumEchoDevice.checksum(bytes))
                #expect(c.reply.dropFirst(8).elementsEqual(bytes))
                received += 1
            }
        }
    }

    @Test("GHT-VUG-03, GHT-HDL-02, INIT-DRV-01, AP-DRV-02, AP-DEF-01: a grant-mode front-end negotiates and streams requests, verified byte for byte")
    func grantMode() throws {
        let path = temporarySocketPath("grant")
        let backEnd = try BackEnd(socketPath: path) { ChecksumEchoDevice() }
        backEnd.start()
        defer { backEnd.stop() }
        let frontEnd = try FrontEnd.connect(socketPath: path)
        #expect(frontEnd.features.isSuperset(of: [.version1, .accessPlatform, .eventIndex, .indirectDescriptors]))
        try Self.stream(frontEnd, count: 2000)
        #expect(try frontEnd.status() == [.acknowledge, .driver, .featuresOK, .driverOK])
        #expect(try frontEnd.readConfig(size: 8) == [1, 0, 0, 0, 0, 1, 0, 0])
        let made = frontEnd.grantsMade
        frontEnd.close()
        #expect(frontEnd.grantsEnded == made, "every grant ended cleanly after the reset")
        // The session ends when the front-end closes; its report shows the work.
        var report: SessionReport?
        for _ in 0..<200 where report == nil {
            report = backEnd.reports.first
            if report == nil { usleep(5000) }
        }
        let r = try #require(report)
        #expect(r.chains == 2000)
        #expect(r.granter == DomainID(1))
        #expect(r.iotlbHitRate > 0.5)
        #expect(r.end == .disconnected)
    }

    @Test("GHT-MEM-03, AP-DEF-01: a guest-physical front-end streams requests through the same back-end")
    func guestPhysicalMode() throws {
        let path = temporarySocketPath("gpa")
        let backEnd = try BackEnd(socketPath: path) { ChecksumEchoDevice() }
        backEnd.start()
        defer { backEnd.stop() }
        var configuration = FrontEndConfiguration()
        configuration.mode = .guestPhysical
        let frontEnd = try FrontEnd.connect(socketPath: path, configuration: configuration)
        #expect(!frontEnd.features.contains(.accessPlatform))
        try Self.stream(frontEnd, count: 500)
        frontEnd.close()
    }

    @Test("PKD-DEF-01, GHT-PKD-08, QRST-DEV-02: a packed-ring front-end of a size that is not a power of 2 streams in grant and guest-physical mode, resets, and GET_VRING_BASE reports both positions",
          arguments: [FrontEndConfiguration.AddressMode.grants, .guestPhysical])
    func packedRing(mode: FrontEndConfiguration.AddressMode) throws {
        let path = temporarySocketPath("packed")
        let backEnd = try BackEnd(socketPath: path) { ChecksumEchoDevice() }
        backEnd.start()
        defer { backEnd.stop() }
        var configuration = FrontEndConfiguration()
        configuration.mode = mode
        configuration.ring = .packed
        configuration.queueSize = 100
        let frontEnd = try FrontEnd.connect(socketPath: path, configuration: configuration)
        #expect(frontEnd.features.isSuperset(of: [.ringPacked, .eventIndex, .indirectDescriptors]))
        try Self.stream(frontEnd, count: 700)
        // QRST-DEV-02: after a reset both sides start again at slot 0, wrap counter 1.
        try frontEnd.reset()
        // Every request is one slot (an indirect list): 2050 slots are 20 laps (wrap counter
        // back at 1) and 50 slots.
        try Self.stream(frontEnd, count: 2050)
        #expect(try frontEnd.stopQueue(0) == 0x8032_8032)
        frontEnd.close()
    }

    @Test("GHT-QST-04: GET_VRING_BASE after traffic is the encoding of the stopped queue's state (split and packed)",
          arguments: [FrontEndConfiguration.RingFormat.split, .packed])
    func vringBaseIsStateEncoding(ring: FrontEndConfiguration.RingFormat) throws {
        let path = temporarySocketPath("qst")
        let backEnd = try BackEnd(socketPath: path) { ChecksumEchoDevice() }
        backEnd.start()
        defer { backEnd.stop() }
        var configuration = FrontEndConfiguration()
        configuration.mode = .guestPhysical
        configuration.ring = ring
        configuration.queueSize = 64
        let frontEnd = try FrontEnd.connect(socketPath: path, configuration: configuration)
        try Self.stream(frontEnd, count: 150)
        let base = try frontEnd.stopQueue(0)
        let state = try QueueState(vhostUserBase: base, format: ring == .packed ? .packed : .split, size: 64, splitUsedIndex: 150)
        #expect(state.vhostUserBase == base)
        if ring == .packed {
            // Each request is one slot (an indirect list): 150 slots are 2 laps and 22 slots.
            #expect(state.availPosition == PackedRingPosition(slot: 22, wrapCounter: true) && state.usedPosition == state.availPosition)
        } else {
            #expect(state.nextAvail == 150)
        }
        frontEnd.close()
    }
}
