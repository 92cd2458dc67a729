import Testing
import VirtioConformance
import VirtioCore

/// The packed in-flight area (QEMU vhost-user.rst "Inflight I/O tracking", packed description)
/// kept by a device queue and recovered by a new one over the same ring: a back-end restart
/// without the process.
@Suite("In-flight tracking: packed queues", .tags(.ring))
struct InflightPackedTests {
    typealias Queue = PackedDeviceQueue<LoggingTranslator<IdentityTranslator>>
    static let features: VirtioFeatures = [.version1, .ringPacked, .indirectDescriptors]

    /// A zeroed packed in-flight area for one queue of `size`, 64-byte aligned like the real one.
    final class Area {
        let memory: GuestMemoryRegion
        let range: HostRange
        init(queueSize: Int) {
            let bytes = InflightLayout.queueAreaSize(queueSize: queueSize, packed: true)
            memory = GuestMemoryRegion(size: 4096 + bytes)
            range = memory.hostRange(at: 0, count: bytes)!
        }
        var view: UnsafeInflightPacked { UnsafeInflightPacked(range)! }
        var inFlight: [Int] { (0..<view.capacity).filter { view.flag($0) == 1 } }
    }

    static func harness(_ size: Int = 8) -> PackedRingHarness {
        PackedRingHarness(queueSize: size, features: features, indirectTables: 4, entriesPerTable: 4)
    }

    /// Request `k`: reads 1 byte at page 10 + k, writes `writable` buffers of 16 bytes at page 20 + k.
    static func add(_ h: inout PackedRingHarness, _ k: Int, writable: Int = 1, layout: ChainLayout = .direct) throws {
        let w = (0..<writable).map { BufferSegment(address: RingHarness.page(20 + k) + UInt64($0 * 16), length: 16) }
        try h.driver.add(readable: [BufferSegment(address: RingHarness.page(10 + k), length: 1)], writable: w,
                         token: UInt64(k), layout: layout)
    }

    /// A second device queue over `h`'s ring, as a restarted back-end sets it up: at `base`
    /// (QEMU keeps no packed position of its own after a crash: its stale one, the start here).
    static func restart(_ h: borrowing PackedRingHarness, _ area: Area, base: PackedRingPosition = .start) throws -> Queue {
        var queue = Queue(ring: h.ring, memory: h.device.memory, features: features, statusCell: h.status,
                          availPosition: base, usedPosition: base)
        try queue.trackInflight(in: area.range)
        return queue
    }

    static func popAll(_ q: inout Queue) throws -> [DescriptorChain] {
        var chains: [DescriptorChain] = []
        while let c = try q.popAvailable() { chains.append(c) }
        return chains
    }

    /// What a test compares of a chain: its id and segments.
    static func shape(_ c: DescriptorChain) -> [ChainSegment] { c.segments.array }

    @Test("GHT-INF-09, GHT-INF-13, GHT-INF-14: lists of several descriptors, an indirect one and a ring that wraps; after out-of-order completions a restarted queue at a stale base resubmits exactly the chains in flight, from the area's copies, in pop order, once, then goes on with new ones")
    func resubmitsInFlight() throws {
        var h = Self.harness()
        let area = Area(queueSize: 8)
        try h.device.trackInflight(in: area.range)
        #expect(area.view.version == 1 && area.view.descriptorCount == 8 && area.view.freeHead == 0)
        try Self.add(&h, 0, writable: 0)                       // slot 0
        try Self.add(&h, 1, writable: 2)                       // slots 1–3
        try Self.add(&h, 2, writable: 3, layout: .indirect)    // slot 4
        try Self.add(&h, 3, writable: 0)                       // slot 5
        try Self.add(&h, 4, writable: 1)                       // slots 6–7
        let chains = try Self.popAll(&h.device)
        #expect(chains.count == 5)
        #expect(area.inFlight.count == 5 && area.view.freeHead == 8, "eight entries hold the eight descriptors")
        #expect(area.view.num(0) == 1 && area.view.num(1) == 3 && area.view.last(1) == 3 && area.view.num(4) == 1)
        // Out of order: 3 then 0, one batch; their used descriptors overwrite slots 0 and 1,
        // the second of which held request 1's first descriptor.
        h.device.addUsed(chains[3], length: 0)
        h.device.addUsed(chains[0], length: 0)
        h.device.publishUsed()
        #expect(area.view.usedIndex == 2 && area.view.oldUsedIndex == 2 && area.view.oldFreeHead == area.view.freeHead)
        var reaped: [UsedBuffer] = []
        try h.driver.reapAllUsed { reaped.append($0) }
        #expect(reaped.map(\.token) == [3, 0])
        // The ring wraps: request 5 goes to slot 0 of the second lap; the device pops it too.
        try Self.add(&h, 5, writable: 0)
        let five = try #require(try h.device.popAvailable())
        #expect(h.device.nextAvailPosition == PackedRingPosition(slot: 1, wrapCounter: false))

        // The back-end dies; a new one starts at QEMU's stale base with the same area.
        var second = try Self.restart(h, area)
        #expect(second.pendingResubmissions == 4)
        #expect(second.nextAvailPosition == PackedRingPosition(slot: 1, wrapCounter: false), "used 2 + 7 slots in flight")
        #expect(second.nextUsedPosition == PackedRingPosition(slot: 2, wrapCounter: true))
        let again = try Self.popAll(&second)
        #expect(again.map(\.headIndex) == [chains[1], chains[2], chains[4], five].map(\.headIndex), "in the order first popped")
        #expect(again.map(Self.shape) == [chains[1], chains[2], chains[4], five].map(Self.shape), "the same buffers")
        // New chains come after the resubmitted ones.
        try Self.add(&h, 6, writable: 0)
        let fresh = try #require(try second.popAvailable())
        #expect(second.inFlightCount == 5)
        second.addUsed(again[1], length: 48)
        second.addUsed(fresh, length: 0)
        second.publishUsed()
        reaped = []
        try h.driver.reapAllUsed { reaped.append($0) }
        #expect(reaped.map(\.token) == [2, 6] && reaped[0].writtenLength == 48)
        // A second restart resubmits only what is still in flight, still in first-pop order.
        var third = try Self.restart(h, area)
        #expect(try Self.popAll(&third).map(Self.shape) == [chains[1], chains[4], five].map(Self.shape))
        #expect(third.nextAvailPosition == PackedRingPosition(slot: 2, wrapCounter: false), "used 4 + 6 slots in flight")
    }

    /// Five one-slot requests popped; 3 and 1 added as a batch, not yet published. Returns the
    /// area's committed fields from before the batch's publication and its heads in flight.
    static func batchPending(_ h: inout PackedRingHarness, _ area: Area) throws -> (chains: [DescriptorChain], freeHead: UInt16, heads: [Int]) {
        try h.device.trackInflight(in: area.range)
        for k in 0..<5 { try Self.add(&h, k, writable: 0) }
        let chains = try Self.popAll(&h.device)
        h.device.addUsed(chains[3], length: 0)
        h.device.addUsed(chains[1], length: 0)
        #expect(area.inFlight.count == 5 && area.view.usedIndex == 0, "nothing of an unpublished batch reaches the area")
        return (chains, area.view.oldFreeHead, area.inFlight)
    }

    /// Puts the area back to "batch prepared, not committed": old fields and flags from before.
    static func uncommit(_ area: Area, freeHead: UInt16, heads: [Int]) {
        let v = area.view
        v.oldFreeHead = freeHead
        v.setUsed(PackedRingPosition(slot: Int(v.usedIndex), wrapCounter: v.usedWrapCounter == 1), committed: .start)
        for e in heads { v.setFlag(e, 1) }
    }

    @Test("GHT-INF-11, GHT-INF-12: a crash after a batch's first used descriptor was written and before its commit resubmits nothing of the batch (the commit covers the whole batch)")
    func crashAfterUsedWrite() throws {
        var h = Self.harness()
        let area = Area(queueSize: 8)
        let (chains, freeHead, heads) = try Self.batchPending(&h, area)
        h.device.publishUsed()
        #expect(area.inFlight.count == 3 && area.view.usedIndex == 2 && area.view.oldUsedIndex == 2)
        Self.uncommit(area, freeHead: freeHead, heads: heads)
        var second = try Self.restart(h, area)
        #expect(try Self.popAll(&second).map(\.headIndex) == [0, 2, 4].map { chains[$0].headIndex })
        #expect(second.nextUsedPosition == PackedRingPosition(slot: 2, wrapCounter: true))
        #expect(area.view.oldUsedIndex == 2 && area.inFlight.count == 3)
    }

    @Test("GHT-INF-11, GHT-INF-12: a crash after a batch's current fields moved and before its first used descriptor reached the ring rolls back: the whole batch is resubmitted, the used position is the old one")
    func crashBeforeUsedWrite() throws {
        var h = Self.harness()
        let area = Area(queueSize: 8)
        let (chains, freeHead, heads) = try Self.batchPending(&h, area)
        h.device.publishUsed()
        Self.uncommit(area, freeHead: freeHead, heads: heads)
        // The held slot (0) never got its used descriptor: it still holds the driver's.
        h.writeAvailable(0, address: RingHarness.page(10), length: 1, id: chains[0].headIndex)
        var second = try Self.restart(h, area)
        #expect(try Self.popAll(&second).map(\.headIndex) == chains.map(\.headIndex), "all five, in pop order")
        #expect(second.nextUsedPosition == .start && second.nextAvailPosition == PackedRingPosition(slot: 5, wrapCounter: true))
    }

    @Test("GHT-INF-11: with IN_ORDER, a batch written as one used descriptor (by the next completion that cannot join it, or by publishUsed) commits exactly its chains")
    func inOrderBatches() throws {
        var h = PackedRingHarness(queueSize: 8, features: Self.features.union(.inOrder))
        let area = Area(queueSize: 8)
        try h.device.trackInflight(in: area.range)
        for k in 0..<4 { try Self.add(&h, k, writable: 1) }
        let chains = try Self.popAll(&h.device)
        h.device.addUsed(chains[0], length: 16)
        h.device.addUsed(chains[1], length: 8)       // not full: the next one cannot join
        #expect(area.inFlight.count == 4, "nothing written yet")
        h.device.addUsed(chains[2], length: 16)      // writes the batch of 0 and 1
        #expect(area.inFlight.count == 2 && area.view.oldUsedIndex == 4, "2 is not written yet: still in flight")
        h.device.publishUsed()
        #expect(area.inFlight.count == 1 && area.view.oldUsedIndex == 6)
        var second = try Self.restart(h, area)
        #expect(try Self.popAll(&second).map(Self.shape) == [Self.shape(chains[3])])
    }

    @Test("GHT-INF-10: with tracking, a driver that makes more slots available than the ring holds while chains are in flight breaks the queue; nothing is written beyond the area")
    func slotsBeyondRing() throws {
        var h = PackedRingHarness(queueSize: 4, features: Self.features)
        let area = Area(queueSize: 4)
        try h.device.trackInflight(in: area.range)
        for slot in 0..<4 { h.writeAvailable(slot, id: 0, flags: slot < 3 ? [.next] : []) }
        #expect(try h.device.popAvailable()?.segmentCount == 4)
        h.writeAvailable(0, id: 1, wrap: false)
        #expect(throws: VirtqueueError.slotsInFlightBeyondRing(limit: 4)) { _ = try h.device.popAvailable() }
        #expect(h.status.status.contains(.deviceNeedsReset))
    }

    @Test("GHT-INF-11, GHT-INF-13: a chain given back to the ring (a buffer not mapped yet) is not left in flight and its entries are free again; a resubmitted one given back is resubmitted again; a reset stops the tracking")
    func giveBack() throws {
        var h = Self.harness()
        let area = Area(queueSize: 8)
        try h.device.trackInflight(in: area.range)
        try Self.add(&h, 0, writable: 1)
        try Self.add(&h, 1, writable: 2)
        let first = try #require(try h.device.popAvailable())
        let second = try #require(try h.device.popAvailable())
        h.device.giveBack(second)
        #expect(area.inFlight == [0] && area.view.freeHead == 2)
        var restarted = try Self.restart(h, area)
        let resubmitted = try #require(try restarted.popAvailable())
        #expect(Self.shape(resubmitted) == Self.shape(first))
        restarted.giveBack(resubmitted)
        #expect(restarted.pendingResubmissions == 1)
        let both = try Self.popAll(&restarted)
        #expect(both.map(Self.shape) == [first, second].map(Self.shape))
        for c in both { restarted.addUsed(c, length: 0) }
        restarted.publishUsed()
        try h.driver.reapAllUsed { _ in }
        // Two laps later (the available position back where it was when the resubmitted
        // chain was popped: slot 2, wrap 1), a new chain given back still goes back to the
        // ring, not to the resubmission list.
        for k in 0..<11 {
            try Self.add(&h, k, writable: 0)
            let c = try #require(try restarted.popAvailable())
            restarted.addUsed(c, length: 0)
            restarted.publishUsed()
            try h.driver.reapAllUsed { _ in }
        }
        try Self.add(&h, 9, writable: 1)
        let late = try #require(try restarted.popAvailable())
        #expect(restarted.nextAvailPosition == PackedRingPosition(slot: 2, wrapCounter: true))
        restarted.giveBack(late)
        #expect(restarted.pendingResubmissions == 0)
        #expect(try restarted.popAvailable().map(Self.shape) == Self.shape(late))
        restarted.reset()
        #expect(restarted.pendingResubmissions == 0)
    }
}
