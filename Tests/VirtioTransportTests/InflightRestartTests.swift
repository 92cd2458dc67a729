import Testing
@testable import VirtioTransport
import VirtioCore
import VirtioDevices
import VirtioGrants
import VirtioSystem
import VhostUser

/// A back-end session dies with requests in flight; a new one, given the same in-flight area and
/// the used index as vring base (what QEMU sends after a back-end crash), gets exactly those
/// requests again (Spec/restart.md §1). The "guest" (a split driver over the client's memory)
/// and the area outlive both sessions, as they outlive a back-end process under QEMU.
@Suite("In-flight tracking across a back-end restart", .tags(.transport), .serialized)
struct InflightRestartTests {
    enum Mode: String, CaseIterable, Sendable { case guestPhysical, iova, grants }
    static let size = 16

    /// The guest: its memory, its ring (pages 0–2), its doorbells; requests read page 3 + k
    /// (one byte, k) and write 64 bytes at page 11 + k.
    final class Guest: InflightGuest {
        let memory: SharedMemory
        var driver: SplitDriverQueue
        var area: (memory: SharedMemory, info: VhostUserInflight)?
        /// Grant mode: the guest's table, granting every page to the back-end (domain 0).
        let table: SharedMemory
        var handles: [UInt64] = []
        init(mode: Mode) throws {
            let memory = try SharedMemory.create(name: "inflight-guest", size: 32 * 4096)
            self.memory = memory
            table = try SharedMemory.create(name: "inflight-grants", size: 4096)
            let page = { (n: Int) in memory.range.slice(offset: n * 4096, length: 4096) }
            driver = SplitDriverQueue(ring: try SplitRing(layout: SplitRingLayout(queueSize: InflightRestartTests.size)!,
                                                          descriptorTable: page(0), availRing: page(1), usedRing: page(2)),
                                      features: [.version1])
            if mode == .grants {
                let grants = GrantTable(table: table.range, domain: DomainID(1), frameCount: 32)
                handles = try (0..<32).map { GrantHandle(reference: try grants.grant(frame: UInt32($0), to: DomainID(0), readOnly: false)).rawValue }
            }
        }
        /// How descriptors and ring addresses name page `n`: its grant handle, or its guest address (= IOVA).
        func address(_ n: Int) -> UInt64 { handles.isEmpty ? UInt64(n * 4096) : handles[n] }
        func post(_ k: Int) throws {
            memory.range.slice(offset: (3 + k) * 4096, length: 1).base.storeBytes(of: UInt8(k), as: UInt8.self)
            try driver.add(readable: [BufferSegment(address: address(3 + k), length: 1)],
                           writable: [BufferSegment(address: address(11 + k), length: 64)], token: UInt64(k))
        }
        func reap() throws -> [Int] {
            var tokens: [Int] = []
            while let u = try driver.reapUsed() { tokens.append(Int(u.token)) }
            return tokens
        }
    }

    /// One back-end session as QEMU's vhost-user-blk drives it: features, GET_INFLIGHT_FD the
    /// first time, SET_INFLIGHT_FD, memory, the ring at `base`, enabled. Returns the client and
    /// the kick.
    static func connect(_ path: String, _ guest: some InflightGuest, mode: Mode, base: UInt32,
                        packed: Bool = false, size: Int = size) throws -> (RawVhostUserClient, Doorbell) {
        let c = try RawVhostUserClient(path: path)
        try c.negotiate(mode == .grants ? [.replyAck, .status, .inflightSharedMemory, .grantTable] : [.replyAck, .status, .inflightSharedMemory])
        var features: VirtioFeatures = [.version1, .vhostUserProtocolFeatures]
        if mode != .guestPhysical { features.insert(.accessPlatform) }
        if packed { features.formUnion([.ringPacked, .indirectDescriptors]) }
        #expect(try c.ack(.setFeatures(features)).isSuccess)
        if guest.area == nil {
            let get = VhostUserMessage.getInflightFD(VhostUserInflight(queueCount: 1, queueSize: UInt16(size)))
            try c.send(get)
            let received = try c.channel.receive()
            let reply = try VhostUserCodec.decodeReply(header: received.frame.header, payload: received.frame.payload,
                                                       fileDescriptorCount: received.fds.count, answering: get)
            guard case .inflight(let info) = reply else { throw RawVhostUserClient.Unexpected("GET_INFLIGHT_FD") }
            guest.area = (try SharedMemory.map(fd: received.fds[0], size: Int(info.mmapSize)), info)
        }
        let (area, info) = guest.area!
        #expect(try c.ack(.setInflightFD(info), fds: [area.fd.rawValue]).isSuccess)
        let region = VhostUserMemoryRegion(guestAddress: 0, size: UInt64(guest.memory.size), userAddress: guest.user, mmapOffset: 0)
        #expect(try c.ack(.setMemoryTable(VhostUserMemoryTable(regions: [region])), fds: [guest.memory.fd.rawValue]).isSuccess)
        // IOVA mode: the guest's IOVAs are its guest-physical addresses; ring addresses are IOVAs
        // too. Grant mode: ring addresses are grant handles.
        let ring = { (n: Int) in mode == .guestPhysical ? guest.user + UInt64(n * 4096) : guest.address(n) }
        if mode == .grants {
            let info = VhostUserGrantTable(granter: DomainID(1), grantee: DomainID(0), tableSize: 4096, tableOffset: 0,
                                           framesGuestAddress: 0, frameCount: 32)
            #expect(try c.ack(.setGrantTable(info), fds: [guest.table.fd.rawValue]).isSuccess)
        }
        if mode == .iova {
            try c.send(.iotlb(.update(iova: 0, size: UInt64(guest.memory.size), userAddress: guest.user, permission: .readWrite)))
            #expect(try c.u64Reply(request: 22) == 0)
        }
        let call = try Doorbell(), kick = try Doorbell()
        #expect(try c.ack(.setVringNum(VhostUserVringState(index: 0, num: UInt32(size)))).isSuccess)
        #expect(try c.ack(.setVringBase(VhostUserVringState(index: 0, num: base))).isSuccess)
        #expect(try c.ack(.setVringAddress(VhostUserVringAddress(index: 0, descriptor: ring(0), used: ring(2),
                                                                 available: ring(1)))).isSuccess)
        #expect(try c.ack(.setVringCall(VhostUserVringFile(index: 0)), fds: [call.fd.rawValue]).isSuccess)
        #expect(try c.ack(.setVringKick(VhostUserVringFile(index: 0)), fds: [kick.fd.rawValue]).isSuccess)
        #expect(try c.ack(.setVringEnable(VhostUserVringState(index: 0, num: 1))).isSuccess)
        return (c, kick)
    }

    /// The guest's side of a session, whichever its ring: what ``connect`` hands the back-end.
    protocol InflightGuest: AnyObject {
        var memory: SharedMemory { get }
        var table: SharedMemory { get }
        var area: (memory: SharedMemory, info: VhostUserInflight)? { get set }
        func address(_ n: Int) -> UInt64
    }

    /// The first readable byte of each kept request: which guest request it is.
    static func keptIDs(_ device: DeferringDevice) -> [Int] {
        device.kept.withLock { $0.map { r in
            var reader = r.reader()
            return Int((try? reader.read(UInt8.self)) ?? 0xFF)
        } }
    }

    @Test("GHT-INF-05, GHT-INF-08: a session dies with kept requests, some completed out of order; a new session given the area and the used index as vring base gets exactly the requests in flight, in pop order, once, and nothing completed comes back",
          arguments: Mode.allCases)
    func restartResubmits(mode: Mode) throws {
        let (backEnd, device, guest, first, reaped) = try Self.firstSession(mode: mode)
        defer { backEnd.stop() }
        var all = reaped
        // The back-end dies: the connection drops with four requests inside the device.
        first.close()
        try Self.restart(backEnd, device, guest, mode: mode, base: UInt32(guest.driver.ring.usedRing.loadIndex()), reaped: &all)
    }

    @Test("GHT-INF-05: requests abandoned at a clean stop (GET_VRING_BASE after the drain timeout) stay marked; the next start, at the base GET_VRING_BASE returned, resubmits them once",
          arguments: Mode.allCases)
    func abandonedAtStop(mode: Mode) throws {
        let (backEnd, device, guest, first, reaped) = try Self.firstSession(mode: mode)
        defer { backEnd.stop() }
        var all = reaped
        let stop = VhostUserMessage.getVringBase(VhostUserVringState(index: 0, num: 0))
        try first.send(stop)
        #expect(try first.reply(to: stop) == .vringBase(VhostUserVringState(index: 0, num: 6)))
        first.close()
        try Self.restart(backEnd, device, guest, mode: mode, base: 6, reaped: &all)
    }

    /// A back-end whose device keeps every request, a guest with six requests in flight through
    /// a first session, of which 4 and 1 completed (in that order).
    static func firstSession(mode: Mode) throws -> (BackEnd, DeferringDevice, Guest, RawVhostUserClient, [Int]) {
        let device = DeferringDevice()
        let (backEnd, _) = try EmbeddingTests.serve({ device }) {
            $0.inFlightDrainTimeoutMilliseconds = 50
            $0.logSink = nil
        }
        let guest = try Guest(mode: mode)
        for k in 0..<6 { try guest.post(k) }
        guest.driver.publish()
        let (first, kick) = try connect(backEnd.socketPath, guest, mode: mode, base: 0)
        try kick.signal()
        #expect(eventually { keptIDs(device) == [0, 1, 2, 3, 4, 5] }, "\(keptIDs(device))")
        device.answer { _ in [4, 1] }
        var reaped: [Int] = []
        #expect(eventually { reaped += (try? guest.reap()) ?? []; return reaped.count == 2 })
        #expect(reaped == [4, 1])
        return (backEnd, device, guest, first, reaped)
    }

    /// The second session: at `base`, the four requests still in flight (0, 2, 3, 5) come again,
    /// in pop order, once; then new ones.
    static func restart(_ backEnd: BackEnd, _ device: DeferringDevice, _ guest: Guest, mode: Mode, base: UInt32,
                        reaped: inout [Int]) throws {
        #expect(eventually { backEnd.reports.count == 1 })
        device.kept.withLock { $0.removeAll() }
        #expect(guest.driver.ring.usedRing.loadIndex() == 2)
        let (second, kick2) = try Self.connect(backEnd.socketPath, guest, mode: mode, base: base)
        defer { second.close() }
        try kick2.signal()
        #expect(eventually { Self.keptIDs(device).count == 4 })
        #expect(Self.keptIDs(device) == [0, 2, 3, 5], "the requests in flight, in the order they were first popped")
        device.answer()
        #expect(eventually { reaped += (try? guest.reap()) ?? []; return reaped.count == 6 })
        let all = reaped
        #expect(Set(all) == Set(0..<6) && all.count == 6, "\(all)")
        // Nothing more arrives: completed requests are never redelivered.
        try kick2.signal()
        SystemClock.sleep(nanoseconds: 50_000_000)
        let late = try guest.reap()
        #expect(Self.keptIDs(device).isEmpty && late.isEmpty)
        // New requests go on after the resubmitted ones.
        try guest.post(6)
        guest.driver.publish()
        try kick2.signal()
        #expect(eventually { Self.keptIDs(device) == [6] })
        device.answer()
    }
}

extension InflightRestartTests.InflightGuest {
    /// Where the guest's memory is in this process (the region's user address).
    var user: UInt64 { UInt64(memory.range.startAddress) }
}
