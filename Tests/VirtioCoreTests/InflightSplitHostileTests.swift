import Testing
import VirtioConformance
import VirtioCore

/// The split in-flight area as a hostile front-end can write it (Spec/restart.md §1,
/// GHT-INF-07): every field is checked before a queue believes it.
@Suite("In-flight tracking: a hostile area", .tags(.ring, .hostile))
struct InflightSplitHostileTests {
    typealias Area = InflightSplitTests.Area

    /// A version-1 area for a ring of 8 whose used index is `used`, with `flags` in flight.
    static func recorded(used: UInt16 = 0, inFlight: [(head: Int, counter: UInt64)] = []) -> Area {
        let area = Area(queueSize: 8)
        let v = area.view
        v.version = 1
        v.descriptorCount = 8
        v.usedIndex = used
        for (head, counter) in inFlight {
            v.setCounter(head, counter)
            v.setFlag(head, 1)
        }
        return area
    }

    static func recover(_ area: Area, used: UInt16 = 0) throws(InflightRegionDefect) -> InflightSplitRecovery? {
        try InflightSplitRecovery.recover(area.view, queueSize: 8, usedIndex: used)
    }

    @Test("GHT-INF-07: version, desc_num, flags, counters and the area's size are checked; each refusal names the field")
    func fields() throws {
        let version = Self.recorded()
        version.view.version = 2
        #expect(throws: InflightRegionDefect.version(2)) { try Self.recover(version) }
        let count = Self.recorded()
        count.view.descriptorCount = 16
        #expect(throws: InflightRegionDefect.descriptorCount(16, queueSize: 8)) { try Self.recover(count) }
        let flag = Self.recorded(inFlight: [(1, 5)])
        flag.view.setFlag(6, 0xFF)
        #expect(throws: InflightRegionDefect.flag(index: 6, value: 0xFF)) { try Self.recover(flag) }
        let twice = Self.recorded(inFlight: [(1, 9), (4, 9)])
        #expect(throws: InflightRegionDefect.counter(index: 4, value: 9)) { try Self.recover(twice) }
        let last = Self.recorded(inFlight: [(2, UInt64.max)])
        #expect(throws: InflightRegionDefect.counter(index: 2, value: UInt64.max)) { try Self.recover(last) }
        let small = Area(queueSize: 8)
        #expect(throws: InflightRegionDefect.areaTooSmall(bytes: small.view.capacity * 16 + 16, queueSize: 64)) {
            try InflightSplitRecovery.recover(small.view, queueSize: 64, usedIndex: 0)
        }
        // Counters need not start at 0 or be dense: the order is what they say.
        let sparse = Self.recorded(used: 40, inFlight: [(7, 1000), (0, 3), (5, 77)])
        #expect(try Self.recover(sparse, used: 40) == InflightSplitRecovery(resubmit: [0, 5, 7], nextCounter: 1001, nextAvail: 43))
    }

    @Test("GHT-INF-07: the last batch's walk is bounded by the ring: a batch longer than the ring, a link beyond it or a link back to an entry already met is refused, never followed")
    func batchWalk() throws {
        let long = Self.recorded(used: 0)
        #expect(throws: InflightRegionDefect.batchTooLong(9)) { try Self.recover(long, used: 9) }
        let behind = Self.recorded(used: 5)
        #expect(throws: InflightRegionDefect.batchTooLong(65535)) { try Self.recover(behind, used: 4) }
        let beyond = Self.recorded(used: 0, inFlight: [(1, 0)])
        beyond.view.lastBatchHead = 1
        beyond.view.setNext(1, 300)
        #expect(throws: InflightRegionDefect.batchLink(300)) { try Self.recover(beyond, used: 2) }
        let loop = Self.recorded(used: 0, inFlight: [(1, 0), (2, 1)])
        loop.view.lastBatchHead = 1
        loop.view.setNext(1, 2)
        loop.view.setNext(2, 1)
        #expect(throws: InflightRegionDefect.batchLink(1)) { try Self.recover(loop, used: 3) }
        // A well-formed batch of two: both cleared, the rest resubmitted.
        let good = Self.recorded(used: 0, inFlight: [(1, 0), (2, 1), (3, 2)])
        good.view.lastBatchHead = 3
        good.view.setNext(3, 1)
        #expect(try Self.recover(good, used: 2) == InflightSplitRecovery(resubmit: [2], nextCounter: 2, nextAvail: 3))
        #expect(good.view.usedIndex == 2 && good.view.flag(1) == 0 && good.view.flag(3) == 0)
    }

    @Test("GHT-INF-07: an area that cannot be believed breaks the queue (DEVICE_NEEDS_RESET) with the defect; nothing is resubmitted")
    func breaksQueue() throws {
        var h = RingHarness(queueSize: 8)
        let area = Self.recorded(inFlight: [(1, 0)])
        area.view.setFlag(3, 7)
        #expect(throws: VirtqueueError.inflightRegion(.flag(index: 3, value: 7))) { try h.device.trackInflight(in: area.range) }
        #expect(h.device.isBroken && h.status.status.contains(.deviceNeedsReset))
        #expect(throws: VirtqueueError.inflightRegion(.flag(index: 3, value: 7))) { _ = try h.device.popAvailable() }
        #expect(h.device.pendingResubmissions == 0)
    }
}
