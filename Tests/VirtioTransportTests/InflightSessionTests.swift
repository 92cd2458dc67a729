import Testing
@testable import VirtioTransport
import VirtioCore
import VirtioDevices
import VirtioSystem
import VhostUser

/// GET/SET_INFLIGHT_FD between our front-end, a scripted one and the back-end (Spec/restart.md §1).
@Suite("In-flight area: GET/SET_INFLIGHT_FD", .tags(.transport), .serialized)
struct InflightSessionTests {
    static func client(_ backEnd: BackEnd) throws -> RawVhostUserClient {
        let c = try RawVhostUserClient(path: backEnd.socketPath)
        try c.negotiate([.replyAck, .status, .inflightSharedMemory])
        return c
    }

    @Test("GHT-INF-02, GHT-INF-04: our front-end negotiates INFLIGHT_SHMFD, gets an area sized as libvhost-user sizes it and keeps it until a device reset; a back-end told not to track offers nothing",
          arguments: [FrontEndConfiguration.RingFormat.split, .packed])
    func frontEndKeepsArea(ring: FrontEndConfiguration.RingFormat) throws {
        let (backEnd, _) = try EmbeddingTests.serve({ ChecksumEchoDevice(queueCount: 2) })
        defer { backEnd.stop() }
        var configuration = FrontEndConfiguration.small
        configuration.ring = ring
        configuration.queueCount = 2
        let frontEnd = try FrontEnd.connect(socketPath: backEnd.socketPath, configuration: configuration)
        defer { frontEnd.close() }
        let area = try #require(frontEnd.inflightArea)
        #expect(area.info.queueCount == 2 && area.info.queueSize == 16 && area.info.mmapOffset == 0)
        let expected = InflightLayout.regionSize(queueCount: 2, queueSize: 16, packed: ring == .packed)
        #expect(area.info.mmapSize == UInt64(expected) && area.memory.size == expected)
        #expect(frontEnd.inflightFileDescriptor != nil)
        // A reset forgets what was in flight: the front-end gets a fresh area, as QEMU does.
        try frontEnd.reset()
        #expect(frontEnd.inflightArea != nil && frontEnd.inflightArea?.memory !== area.memory)

        let (plain, _) = try EmbeddingTests.serve({ ChecksumEchoDevice() }) { $0.tracksInflightRequests = false }
        defer { plain.stop() }
        let untracked = try FrontEnd.connect(socketPath: plain.socketPath, configuration: .small)
        defer { untracked.close() }
        #expect(untracked.inflightArea == nil)
    }

    @Test("GHT-INF-01: the split and packed per-queue areas are sized and aligned as libvhost-user and DPDK size them")
    func layoutSizes() {
        #expect(InflightLayout.queueAreaSize(queueSize: 128, packed: false) == 2112)   // 16 × 128 + 2, up to 64
        #expect(InflightLayout.queueAreaSize(queueSize: 1, packed: false) == 64)
        #expect(InflightLayout.queueAreaSize(queueSize: 256, packed: true) == 8256)     // 32 × 256 + 32, up to 64
        #expect(InflightLayout.regionSize(queueCount: 3, queueSize: 4, packed: false) == 3 * 128)
    }

    @Test("GHT-INF-02, GHT-INF-03: GET and SET_INFLIGHT_FD for more queues than the device has, an area too small or past the file's end, or without the feature, end the session")
    func hostileRequests() throws {
        let (backEnd, _) = try EmbeddingTests.serve({ ChecksumEchoDevice(queueCount: 1) })
        defer { backEnd.stop() }
        let file = try SharedMemory.create(name: "hostile-inflight", size: 4096)
        let cases: [(VhostUserMessage, [Int32])] = [
            (.getInflightFD(VhostUserInflight(queueCount: 2, queueSize: 16)), []),
            (.setInflightFD(VhostUserInflight(mmapSize: 4096, mmapOffset: 0, queueCount: 2, queueSize: 16)), [file.fd.rawValue]),
            (.setInflightFD(VhostUserInflight(mmapSize: 64, mmapOffset: 0, queueCount: 1, queueSize: 16)), [file.fd.rawValue]),
            (.setInflightFD(VhostUserInflight(mmapSize: 8192, mmapOffset: 0, queueCount: 1, queueSize: 512)), [file.fd.rawValue]),
            (.setInflightFD(VhostUserInflight(mmapSize: 4096, mmapOffset: 4096, queueCount: 1, queueSize: 16)), [file.fd.rawValue]),
        ]
        for (message, fds) in cases {
            let c = try Self.client(backEnd)
            try c.send(message, needReply: true, fds: fds)
            #expect(c.isClosedByPeer(), "\(message)")
            c.close()
        }
        let without = try RawVhostUserClient(path: backEnd.socketPath)
        try without.negotiate([.replyAck])
        try without.send(.getInflightFD(VhostUserInflight(queueCount: 1, queueSize: 16)))
        #expect(without.isClosedByPeer())
        without.close()
        // A well-formed SET is acknowledged, and GET answers with the area and one descriptor.
        let c = try Self.client(backEnd)
        defer { c.close() }
        #expect(try c.ack(.setInflightFD(VhostUserInflight(mmapSize: 4096, mmapOffset: 0, queueCount: 1, queueSize: 16)),
                          fds: [file.fd.rawValue]).isSuccess)
        let get = VhostUserMessage.getInflightFD(VhostUserInflight(queueCount: 1, queueSize: 64))
        try c.send(get)
        #expect(try c.reply(to: get) == .inflight(VhostUserInflight(mmapSize: 1088, mmapOffset: 0, queueCount: 1, queueSize: 64)))
    }
}

extension InflightSessionTests {
    @Test("GHT-INF-05: with our front-end in grant and guest-physical mode, kept requests are marked in flight in the area and cleared once completed; used_idx follows the used ring",
          arguments: [FrontEndConfiguration.AddressMode.grants, .guestPhysical])
    func areaFollowsTheRing(mode: FrontEndConfiguration.AddressMode) throws {
        let device = DeferringDevice()
        let (backEnd, _) = try EmbeddingTests.serve({ device }) { $0.logSink = nil }
        defer { backEnd.stop() }
        var configuration = FrontEndConfiguration.small
        configuration.mode = mode
        let frontEnd = try FrontEnd.connect(socketPath: backEnd.socketPath, configuration: configuration)
        defer { frontEnd.close() }
        let memory = try #require(frontEnd.inflightArea?.memory)
        let area = try #require(UnsafeInflightSplit(memory.range))
        let q = frontEnd.queues[0]
        for k in 0..<3 { _ = try q.submit([UInt8(k), 1, 2], replyCapacity: 16) }
        try q.publish()
        #expect(eventually { device.kept.withLock { $0.count } == 3 })
        #expect(area.version == 1 && area.descriptorCount == 16)
        #expect((0..<16).filter { area.flag($0) == 1 }.count == 3 && area.usedIndex == 0)
        device.answer { _ in [2, 0] }
        var done = 0
        #expect(eventually { done += (try? q.pollCompletions { _, _ in })  ?? 0; return done == 2 })
        #expect((0..<16).filter { area.flag($0) == 1 }.count == 1 && area.usedIndex == 2)
        device.answer()
        #expect(eventually { done += (try? q.pollCompletions { _, _ in }) ?? 0; return done == 3 })
        #expect((0..<16).allSatisfy { area.flag($0) == 0 } && area.usedIndex == 3)
    }
}
