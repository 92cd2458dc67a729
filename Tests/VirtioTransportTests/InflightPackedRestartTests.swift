import Testing
@testable import VirtioTransport
import VirtioCore
import VirtioDevices
import VirtioGrants
import VirtioSystem
import VhostUser

/// The packed counterpart of ``InflightRestartTests`` (Spec/restart.md §1, GHT-INF-16): a session
/// dies with requests kept, some completed out of order, and the ring wrapped; a new session
/// given the same area gets exactly those requests again, from the area's copies, whatever vring
/// base it is given (QEMU's is stale for a packed ring after a crash).
@Suite("In-flight tracking across a back-end restart: packed rings", .tags(.transport), .serialized)
struct InflightPackedRestartTests {
    typealias Mode = InflightRestartTests.Mode
    typealias Base = InflightRestartTests
    static let size = 8

    /// The guest over a packed ring (pages 0–2); requests read page 3 + k (one byte, k) and write
    /// 64 bytes at page 11 + k; indirect tables at page 20 (guest-physical and IOVA modes).
    final class Guest: InflightRestartTests.InflightGuest {
        let memory: SharedMemory
        var driver: PackedDriverQueue
        var area: (memory: SharedMemory, info: VhostUserInflight)?
        let table: SharedMemory
        var handles: [UInt64] = []
        init(mode: Mode) throws {
            let memory = try SharedMemory.create(name: "inflight-packed-guest", size: 32 * 4096)
            self.memory = memory
            table = try SharedMemory.create(name: "inflight-packed-grants", size: 4096)
            let page = { (n: Int) in memory.range.slice(offset: n * 4096, length: 4096) }
            let ring = try PackedRing(layout: PackedRingLayout(queueSize: InflightPackedRestartTests.size)!,
                                      descriptorRing: page(0), driverEventArea: page(1), deviceEventArea: page(2))
            let pool = mode == .grants ? nil : IndirectTablePool(block: page(20), deviceAddress: 20 * 4096, tableCount: 4, entriesPerTable: 4)
            driver = PackedDriverQueue(ring: ring, features: [.version1, .ringPacked, .indirectDescriptors], indirectTables: pool)
            if mode == .grants {
                let grants = GrantTable(table: table.range, domain: DomainID(1), frameCount: 32)
                handles = try (0..<32).map { GrantHandle(reference: try grants.grant(frame: UInt32($0), to: DomainID(0), readOnly: false)).rawValue }
            }
        }
        func address(_ n: Int) -> UInt64 { handles.isEmpty ? UInt64(n * 4096) : handles[n] }
        /// Request `k`: two descriptors, or one indirect descriptor when `indirect`.
        func post(_ k: Int, indirect: Bool = false) throws {
            memory.range.slice(offset: (3 + k) * 4096, length: 1).base.storeBytes(of: UInt8(k), as: UInt8.self)
            try driver.add(readable: [BufferSegment(address: address(3 + k), length: 1)],
                           writable: [BufferSegment(address: address(11 + k), length: 64)], token: UInt64(k),
                           layout: indirect ? .indirect : .direct)
        }
        func reap() throws -> [Int] {
            var tokens: [Int] = []
            while let u = try driver.reapUsed() { tokens.append(Int(u.token)) }
            return tokens
        }
    }

    @Test("GHT-INF-16, GHT-INF-13, GHT-INF-14: a session dies with kept requests (lists of two descriptors, an indirect one, one across the ring's end), some completed out of order; a new session given the area and a stale vring base gets exactly the requests in flight, in pop order, once, then new ones",
          arguments: Mode.allCases)
    func restartResubmits(mode: Mode) throws {
        let device = DeferringDevice()
        let (backEnd, log) = try EmbeddingTests.serve({ device }) {
            $0.inFlightDrainTimeoutMilliseconds = 50
        }
        defer { backEnd.stop() }
        let guest = try Guest(mode: mode)
        // Slots 0–1, 2–3, 4–5, then request 3 in slot 6 (indirect except in grant mode, where
        // tables are not granted: two slots then, 6–7).
        for k in 0..<3 { try guest.post(k) }
        try guest.post(3, indirect: mode != .grants)
        let start = UInt32(PackedRingPosition.start.rawValue) * 0x1_0001
        let (first, kick) = try Base.connect(backEnd.socketPath, guest, mode: mode, base: start, packed: true, size: Self.size)
        try kick.signal()
        #expect(eventually { Base.keptIDs(device) == [0, 1, 2, 3] }, "\(Base.keptIDs(device))")
        device.answer { _ in [2, 0] }
        var reaped: [Int] = []
        #expect(eventually { reaped += (try? guest.reap()) ?? []; return reaped.count == 2 })
        #expect(reaped == [2, 0])
        // Request 4 takes the ring's last slot(s) and wraps to the next lap.
        try guest.post(4)
        try kick.signal()
        #expect(eventually { Base.keptIDs(device) == [1, 3, 4] }, "\(log.records.map(\.message))")

        // The back-end dies: the connection drops with three requests inside the device.
        first.close()
        #expect(eventually { backEnd.reports.count == 1 })
        device.kept.withLock { $0.removeAll() }
        // QEMU sends the position it last knew (the start, for a first run), not the used one.
        let (second, kick2) = try Base.connect(backEnd.socketPath, guest, mode: mode, base: start, packed: true, size: Self.size)
        defer { second.close() }
        try kick2.signal()
        #expect(eventually { Base.keptIDs(device).count == 3 })
        #expect(Base.keptIDs(device) == [1, 3, 4], "the requests in flight, in the order they were first popped")
        device.answer()
        #expect(eventually { reaped += (try? guest.reap()) ?? []; return reaped.count == 5 })
        #expect(Set(reaped) == Set(0..<5) && reaped.count == 5, "\(reaped)")
        // Nothing more arrives: completed requests are never redelivered.
        try kick2.signal()
        SystemClock.sleep(nanoseconds: 50_000_000)
        let late = try guest.reap()
        #expect(Base.keptIDs(device).isEmpty && late.isEmpty)
        // New requests go on after the resubmitted ones.
        try guest.post(5)
        try kick2.signal()
        #expect(eventually { Base.keptIDs(device) == [5] })
        device.answer()
        #expect(eventually { reaped += (try? guest.reap()) ?? []; return reaped.count == 6 })
    }
}
