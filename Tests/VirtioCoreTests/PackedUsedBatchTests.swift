import Testing
import VirtioCore
import VirtioConformance

/// Used-descriptor batching of the packed ring (GHT-PKD-11): the used descriptors added between
/// two publications go out together, the first one's flags written last, as Linux's packed
/// rings and DPDK's vhost write theirs.
@Suite("Packed used-descriptor batches", .tags(.ring))
struct PackedUsedBatchTests {
    /// Adds `count` one-buffer requests (each with 16 writable bytes) and pops them all.
    static func popRequests(_ h: inout PackedRingHarness, count: Int, firstToken: UInt64 = 0) throws -> [DescriptorChain] {
        for i in 0..<count {
            try h.driver.add(readable: [], writable: [BufferSegment(address: RingHarness.page(1 + i), length: 16)],
                             token: firstToken + UInt64(i))
        }
        var chains: [DescriptorChain] = []
        while let c = try h.device.popAvailable() { chains.append(c) }
        #expect(chains.count == count)
        return chains
    }

    @Test("GHT-PKD-11: a batch's later used descriptors are in the ring before its first, which publishUsed writes")
    func firstWrittenLast() throws {
        var h = PackedRingHarness(queueSize: 8)
        let chains = try Self.popRequests(&h, count: 3)
        for (i, c) in chains.enumerated() { h.device.addUsed(c, length: UInt32(4 + i)) }
        // Slots 1 and 2 hold their used descriptors already; slot 0 is still the driver's.
        for slot in 1...2 {
            let d = h.ring.descriptorRing.load(slot)
            let expected = (chains[slot].headIndex, UInt32(4 + slot))
            #expect(d.flags.isUsed(wrapCounter: true))
            #expect(d.id == expected.0 && d.length == expected.1)
        }
        #expect(!h.ring.descriptorRing.load(0).flags.isUsed(wrapCounter: true), "the batch's first is held back")
        let unwritten = h.device.hasUnwrittenUsed
        #expect(unwritten)
        #expect(try h.driver.reapUsed() == nil, "the front-end sees nothing of an unpublished batch")
        h.device.publishUsed()
        let unwrittenAfter = h.device.hasUnwrittenUsed
        #expect(!unwrittenAfter)
        let d = h.ring.descriptorRing.load(0)
        #expect(d.flags.isUsed(wrapCounter: true) && d.flags.contains(.write))
        #expect(d.id == chains[0].headIndex && d.length == 4)
        var used: [UsedBuffer] = []
        try h.driver.reapAllUsed { used.append($0) }
        let expected: [UsedBuffer] = (0..<3).map { UsedBuffer(token: UInt64($0), writtenLength: UInt32(4 + $0)) }
        #expect(used == expected)
        // The next batch starts over: its first (slot 3) is held again.
        let next = try Self.popRequests(&h, count: 2, firstToken: 10)
        for c in next { h.device.addUsed(c, length: 1) }
        #expect(!h.ring.descriptorRing.load(3).flags.isUsed(wrapCounter: true))
        #expect(h.ring.descriptorRing.load(4).flags.isUsed(wrapCounter: true))
        h.device.publishUsed()
        used = []
        try h.driver.reapAllUsed { used.append($0) }
        #expect(used.map(\.token) == [10, 11])
    }

    @Test("GHT-PKD-11: a batch across the end of the ring holds its first slot in the old lap")
    func acrossTheEnd() throws {
        var h = PackedRingHarness(queueSize: 4)
        // Move both sides to slot 3 of the first lap.
        for c in try Self.popRequests(&h, count: 3) { h.device.addUsed(c, length: 0) }
        h.device.publishUsed()
        try h.driver.reapAllUsed { _ in }
        let chains = try Self.popRequests(&h, count: 3, firstToken: 20)
        for c in chains { h.device.addUsed(c, length: 2) }
        #expect(!h.ring.descriptorRing.load(3).flags.isUsed(wrapCounter: true), "slot 3, first lap: held")
        for slot in 0...1 { #expect(h.ring.descriptorRing.load(slot).flags.isUsed(wrapCounter: false), "second lap: written") }
        #expect(try h.driver.reapUsed() == nil)
        h.device.publishUsed()
        #expect(h.ring.descriptorRing.load(3).flags.isUsed(wrapCounter: true))
        var used: [UsedBuffer] = []
        try h.driver.reapAllUsed { used.append($0) }
        #expect(used.map(\.token) == [20, 21, 22])
        let position = h.driver.nextUsedPosition
        #expect(position == PackedRingPosition(slot: 2, wrapCounter: false))
    }

    @Test("GHT-PKD-11, PKD-EVT-01: a notification decision writes the held descriptor first")
    func notificationWritesHeld() throws {
        var h = PackedRingHarness(queueSize: 8)
        let chains = try Self.popRequests(&h, count: 2)
        for c in chains { h.device.addUsed(c, length: 1) }
        let owed = h.device.needsNotification()
        #expect(owed)
        #expect(h.ring.descriptorRing.load(0).flags.isUsed(wrapCounter: true))
        var used: [UsedBuffer] = []
        try h.driver.reapAllUsed { used.append($0) }
        #expect(used.map(\.token) == [0, 1])
    }

    @Test("GHT-PKD-11, GHT-BRK-02, QRST-DEV-02: a queue that breaks or is reset before publishing writes nothing of the held descriptor")
    func heldDropped() throws {
        var h = PackedRingHarness(queueSize: 8)
        let chains = try Self.popRequests(&h, count: 2)
        for c in chains { h.device.addUsed(c, length: 1) }
        h.device.fail(.abandonedByDevice)
        h.device.publishUsed()
        #expect(!h.ring.descriptorRing.load(0).flags.isUsed(wrapCounter: true))
        let unwritten = h.device.hasUnwrittenUsed
        #expect(!unwritten)

        var r = PackedRingHarness(queueSize: 8)
        let held = try Self.popRequests(&r, count: 1)
        r.device.addUsed(held[0], length: 1)
        r.device.reset(availPosition: .start, usedPosition: .start)
        r.device.publishUsed()
        #expect(!r.ring.descriptorRing.load(0).flags.isUsed(wrapCounter: true))
        let unwrittenAfterReset = r.device.hasUnwrittenUsed
        #expect(!unwrittenAfterReset)
    }
}
