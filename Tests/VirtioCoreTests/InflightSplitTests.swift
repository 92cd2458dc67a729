import Testing
import VirtioConformance
import VirtioCore

/// The split in-flight area (QEMU vhost-user.rst "Inflight I/O tracking") kept by a device queue
/// and recovered by a new one over the same ring: a back-end restart without the process.
@Suite("In-flight tracking: split queues", .tags(.ring))
struct InflightSplitTests {
    /// A zeroed in-flight area for one queue of `size`, 64-byte aligned like the real one.
    final class Area {
        let memory: GuestMemoryRegion
        let range: HostRange
        init(queueSize: Int) {
            let bytes = InflightLayout.queueAreaSize(queueSize: queueSize, packed: false)
            memory = GuestMemoryRegion(size: 4096 + bytes)
            range = memory.hostRange(at: 0, count: bytes)!
        }
        var view: UnsafeInflightSplit { UnsafeInflightSplit(range)! }
    }

    /// `count` one-descriptor chains, head i writing 8 bytes at page i, made available.
    static func post(_ h: inout RingHarness, heads: [UInt16], from position: UInt16 = 0) {
        for head in heads { h.writeDescriptor(Int(head), address: RingHarness.page(Int(head)), length: 8, flags: .write) }
        h.makeAvailable(heads, from: position)
    }

    /// A second device queue over `h`'s ring, as a restarted back-end sets it up: at the used
    /// index (QEMU's vring base after a back-end died), tracking `area`.
    static func restart(_ h: borrowing RingHarness, _ area: Area) throws -> SplitDeviceQueue<LoggingTranslator<IdentityTranslator>> {
        let used = h.ring.usedRing.loadIndex()
        var queue = SplitDeviceQueue(ring: h.ring, memory: h.translator, features: [.version1], statusCell: h.status,
                                     nextAvailIndex: used, usedIndex: used)
        try queue.trackInflight(in: area.range)
        return queue
    }

    static func popAll(_ q: inout SplitDeviceQueue<LoggingTranslator<IdentityTranslator>>) throws -> [DescriptorChain] {
        var chains: [DescriptorChain] = []
        while let c = try q.popAvailable() { chains.append(c) }
        return chains
    }

    @Test("GHT-INF-05, GHT-INF-08: a fresh area is initialized; after out-of-order completions a restarted queue resubmits exactly the chains in flight, in pop order, once, then goes on with new ones")
    func resubmitsInFlight() throws {
        var h = RingHarness(queueSize: 8)
        let area = Area(queueSize: 8)
        try h.device.trackInflight(in: area.range)
        #expect(area.view.version == 1 && area.view.descriptorCount == 8 && area.view.usedIndex == 0)
        Self.post(&h, heads: [5, 3, 0, 6, 1, 2])
        let chains = try Self.popAll(&h.device)
        #expect(chains.map(\.headIndex) == [5, 3, 0, 6, 1, 2])
        #expect((0..<8).filter { area.view.flag($0) == 1 } == [0, 1, 2, 3, 5, 6])
        // Out of order: 0 and 1 complete, in one batch.
        h.device.addUsed(chains[4], length: 8)
        h.device.addUsed(chains[2], length: 8)
        h.device.publishUsed()
        #expect((0..<8).filter { area.view.flag($0) == 1 } == [2, 3, 5, 6] && area.view.usedIndex == 2)

        // The back-end dies; a new one starts at the used index (2) with the same area.
        var second = try Self.restart(h, area)
        #expect(second.pendingResubmissions == 4 && second.nextAvailIndex == 6)
        let again = try Self.popAll(&second)
        #expect(again.map(\.headIndex) == [5, 3, 6, 2], "the chains in flight, in the order they were first popped")
        // New chains come after the resubmitted ones.
        Self.post(&h, heads: [7], from: 6)
        let fresh = try #require(try second.popAvailable())
        #expect(fresh.headIndex == 7 && second.inFlightCount == 5)
        second.addUsed(again[1], length: 8)
        second.addUsed(fresh, length: 8)
        second.publishUsed()
        // A second restart resubmits only what is still in flight, still in first-pop order.
        var third = try Self.restart(h, area)
        #expect(try Self.popAll(&third).map(\.headIndex) == [5, 6, 2])
    }

    @Test("GHT-INF-06: a crash after the used index of a batch was published and before its flags were cleared resubmits nothing of that batch (the whole batch list is cleared, not only its last head)")
    func crashBetweenPublishAndClear() throws {
        var h = RingHarness(queueSize: 8)
        let area = Area(queueSize: 8)
        try h.device.trackInflight(in: area.range)
        Self.post(&h, heads: [0, 1, 2, 3])
        let chains = try Self.popAll(&h.device)
        for k in [2, 0, 1] { h.device.addUsed(chains[k], length: 8) }
        // The crash: used.idx is out, nothing of the area's commit is.
        h.ring.usedRing.storeIndex(3)
        #expect((0..<8).filter { area.view.flag($0) == 1 } == [0, 1, 2, 3] && area.view.usedIndex == 0)
        #expect(area.view.lastBatchHead == 1)
        var second = try Self.restart(h, area)
        #expect(try Self.popAll(&second).map(\.headIndex) == [3], "only the chain never completed")
        #expect(area.view.usedIndex == 3)
    }

    @Test("GHT-INF-06: a chain given back to the ring (a buffer not mapped yet) is not left in flight; a resubmitted one given back is resubmitted again")
    func giveBack() throws {
        var h = RingHarness(queueSize: 8)
        let area = Area(queueSize: 8)
        try h.device.trackInflight(in: area.range)
        Self.post(&h, heads: [4, 1])
        let first = try #require(try h.device.popAvailable())
        let second = try #require(try h.device.popAvailable())
        h.device.giveBack(second)
        #expect(area.view.flag(1) == 0 && area.view.flag(4) == 1)
        _ = first
        var restarted = try Self.restart(h, area)
        let resubmitted = try #require(try restarted.popAvailable())
        #expect(resubmitted.headIndex == 4)
        restarted.giveBack(resubmitted)
        #expect(restarted.pendingResubmissions == 1)
        #expect(try Self.popAll(&restarted).map(\.headIndex) == [4, 1])
    }

    @Test("GHT-INF-08, GHT-VAL-03: a resubmitted head that is not a valid chain breaks the queue with the chain's error; a head the driver makes available again while resubmitted is in flight twice")
    func resubmittedChainsAreValidated() throws {
        var h = RingHarness(queueSize: 8)
        let area = Area(queueSize: 8)
        try h.device.trackInflight(in: area.range)
        Self.post(&h, heads: [0, 1])
        _ = try Self.popAll(&h.device)
        // The driver (or a hostile front-end) rewrote descriptor 1 meanwhile.
        h.writeDescriptor(1, address: RingHarness.page(1), length: 8, flags: [.write, .next], next: 200)
        var second = try Self.restart(h, area)
        #expect(try second.popAvailable()?.headIndex == 0)
        #expect(throws: VirtqueueError.nextOutOfRange(next: 200, tableSize: 8)) { _ = try second.popAvailable() }
        #expect(h.status.status.contains(.deviceNeedsReset))

        var h2 = RingHarness(queueSize: 8)
        let area2 = Area(queueSize: 8)
        try h2.device.trackInflight(in: area2.range)
        Self.post(&h2, heads: [3])
        _ = try Self.popAll(&h2.device)
        var again = try Self.restart(h2, area2)
        #expect(try again.popAvailable()?.headIndex == 3)
        h2.makeAvailable([3], from: 1)
        #expect(throws: VirtqueueError.headInFlight(3)) { _ = try again.popAvailable() }
    }
}
