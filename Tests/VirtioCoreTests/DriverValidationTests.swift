import Testing
import VirtioCore

/// A hostile device: the used ring is written by hand, and the driver must refuse what it did
/// not expose (Spec/transport.md §5).
@Suite("Driver-side validation of a hostile device", .tags(.ring, .hostile))
struct DriverValidationTests {
    /// A driver with chains of tokens 100, 101, 102 exposed (heads 0, 1, 2; writable capacity 64 each).
    func exposedThree() throws -> RingHarness {
        var h = RingHarness(queueSize: 8)
        for i in 0..<3 {
            try h.driver.add(readable: [], writable: [BufferSegment(address: RingHarness.page(i), length: 64)], token: 100 + UInt64(i))
        }
        h.driver.publish()
        return h
    }

    func use(_ h: borrowing RingHarness, _ elements: [UsedElement]) {
        for (i, e) in elements.enumerated() { h.ring.usedRing.setElement(i, e) }
        h.ring.usedRing.storeIndex(UInt16(elements.count))
    }

    func expectBroken(_ h: inout RingHarness, _ expected: DriverQueueError, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(throws: expected, sourceLocation: sourceLocation) { _ = try h.driver.reapUsed() }
        #expect(h.driver.isBroken, sourceLocation: sourceLocation)
        // GHT-USD-05: nothing more is handed out, and the same error comes back.
        #expect(throws: expected, sourceLocation: sourceLocation) { _ = try h.driver.reapUsed() }
        #expect(throws: expected, sourceLocation: sourceLocation) {
            try h.driver.add(readable: [BufferSegment(address: 0, length: 1)], writable: [], token: 9)
        }
    }

    @Test("GHT-USD-02, USD-DEF-02: a used id out of range breaks the queue")
    func idOutOfRange() throws {
        var h = try exposedThree()
        use(h, [UsedElement(id: 8, length: 0)])
        expectBroken(&h, .usedIdOutOfRange(8))
    }

    @Test("GHT-USD-03, USD-DEF-02: a used id that was never exposed breaks the queue")
    func idNeverIssued() throws {
        var h = try exposedThree()
        use(h, [UsedElement(id: 5, length: 0)])
        expectBroken(&h, .usedIdNotOutstanding(5))
    }

    @Test("GHT-USD-03: a chain used twice breaks the queue after the first, valid, completion")
    func usedTwice() throws {
        var h = try exposedThree()
        use(h, [UsedElement(id: 1, length: 10), UsedElement(id: 1, length: 10)])
        #expect(try h.driver.reapUsed() == UsedBuffer(token: 101, writtenLength: 10))
        expectBroken(&h, .usedIdNotOutstanding(1))
    }

    @Test("GHT-USD-04: a used length beyond the writable capacity breaks the queue")
    func lengthTooLarge() throws {
        var h = try exposedThree()
        use(h, [UsedElement(id: 0, length: 65)])
        expectBroken(&h, .usedLengthExceedsBuffer(id: 0, length: 65, capacity: 64))
    }

    @Test("GHT-USD-04: a readable-only chain must be used with length 0 (USD-DEF-02)")
    func readableOnlyLength() throws {
        var h = RingHarness(queueSize: 8)
        try h.driver.add(readable: [BufferSegment(address: RingHarness.page(0), length: 64)], writable: [], token: 7)
        h.driver.publish()
        use(h, [UsedElement(id: 0, length: 1)])
        expectBroken(&h, .usedLengthExceedsBuffer(id: 0, length: 1, capacity: 0))
    }

    @Test("GHT-USD-01: a used index that jumps past the outstanding chains breaks the queue")
    func usedIndexJumps() throws {
        var h = try exposedThree()
        h.ring.usedRing.storeIndex(4)
        expectBroken(&h, .usedIndexTooFarAhead(usedIndex: 4, lastSeen: 0, outstanding: 3))
    }

    @Test("GHT-USD-01: a used index that moves backwards breaks the queue")
    func usedIndexBackwards() throws {
        var h = try exposedThree()
        use(h, [UsedElement(id: 0, length: 1)])
        _ = try h.driver.reapUsed()
        h.ring.usedRing.storeIndex(0)
        expectBroken(&h, .usedIndexTooFarAhead(usedIndex: 0, lastSeen: 1, outstanding: 2))
    }

    @Test("GHT-USD-05: once broken, the queue rethrows whatever the device does to the used ring next")
    func brokenStaysBroken() throws {
        var h = try exposedThree()
        let error = DriverQueueError.usedIndexTooFarAhead(usedIndex: 4, lastSeen: 0, outstanding: 3)
        h.ring.usedRing.storeIndex(4)
        #expect(throws: error) { _ = try h.driver.reapUsed() }
        // The device repairs the ring: a valid element under a sane index. Nothing is handed out.
        use(h, [UsedElement(id: 0, length: 1)])
        #expect(throws: error) { _ = try h.driver.reapUsed() }
        // Nothing new at all: still the error, not "nothing used".
        h.ring.usedRing.storeIndex(0)
        #expect(throws: error) { _ = try h.driver.reapUsed() }
    }

    @Test("GHT-USD-05: reapAllUsed stops at the first bad element and hands out only valid ones")
    func reapAllStops() throws {
        var h = try exposedThree()
        use(h, [UsedElement(id: 2, length: 3), UsedElement(id: 7, length: 0), UsedElement(id: 0, length: 1)])
        var tokens: [UInt64] = []
        #expect(throws: DriverQueueError.usedIdNotOutstanding(7)) {
            try h.driver.reapAllUsed { tokens.append($0.token) }
        }
        #expect(tokens == [102])
    }

    @Test("USD-DRV-01: the written length reaches the caller exactly as reported")
    func lengthReported() throws {
        var h = try exposedThree()
        use(h, [UsedElement(id: 2, length: 10), UsedElement(id: 0, length: 0)])
        #expect(try h.driver.reapUsed() == UsedBuffer(token: 102, writtenLength: 10))
        #expect(try h.driver.reapUsed() == UsedBuffer(token: 100, writtenLength: 0))
        #expect(try h.driver.reapUsed() == nil)
        #expect(h.driver.outstandingCount == 1)
    }

    @Test("UNS-DRV-02: spurious used notifications (no new used entries) are harmless")
    func spurious() throws {
        var h = try exposedThree()
        for _ in 0..<1000 { #expect(try h.driver.reapUsed() == nil) }
        #expect(h.driver.outstandingCount == 3)
        #expect(!h.driver.isBroken)
    }

    @Test("GHT-DRV-01: taking a chain back ignores what the device scribbled on the descriptor table")
    func detachIgnoresSharedTable() throws {
        var h = RingHarness(queueSize: 8)
        try h.driver.add(readable: [BufferSegment(address: 1, length: 1), BufferSegment(address: 2, length: 2)],
                         writable: [BufferSegment(address: 3, length: 3)], token: 42)
        h.driver.publish()
        #expect(h.driver.freeDescriptorCount == 5)
        // A hostile device rewrites the chain's links to point everywhere.
        for i in 0..<8 { h.writeDescriptor(i, address: 0, length: 0, flags: .next, next: UInt16(7 - i)) }
        use(h, [UsedElement(id: 0, length: 3)])
        #expect(try h.driver.reapUsed() == UsedBuffer(token: 42, writtenLength: 3))
        #expect(h.driver.freeDescriptorCount == 8)
        // Every descriptor is usable again, each exactly once.
        var heads: Set<UInt16> = []
        for t in 0..<8 { heads.insert(try h.driver.add(readable: [BufferSegment(address: 0, length: 1)], writable: [], token: UInt64(t))) }
        #expect(heads == Set(0..<8))
        #expect(throws: DriverQueueError.queueFull) {
            try h.driver.add(readable: [BufferSegment(address: 0, length: 1)], writable: [], token: 9)
        }
    }

    @Test("GHT-DRV-03, SPL-DRV-02, IND-DRV-03: chains the driver must not expose are refused up front")
    func driverRefuses() throws {
        var h = RingHarness(queueSize: 4)
        #expect(throws: DriverQueueError.emptyChain) { try h.driver.add(readable: [], writable: [], token: 0) }
        let five = (0..<5).map { BufferSegment(address: UInt64($0), length: 1) }
        #expect(throws: DriverQueueError.chainTooLong(segments: 5, limit: 4)) { try h.driver.add(readable: five, writable: [], token: 0) }
        let huge = [BufferSegment(address: 0, length: .max), BufferSegment(address: 0, length: 2)]
        #expect(throws: DriverQueueError.totalLengthOverflow) { try h.driver.add(readable: huge, writable: [], token: 0) }
        #expect(throws: DriverQueueError.indirectUnavailable) {
            try h.driver.add(readable: [BufferSegment(address: 0, length: 1)], writable: [], token: 0, layout: .indirect)
        }
        // Nothing was exposed and no descriptor was lost.
        #expect(h.driver.freeDescriptorCount == 4)
        #expect(h.driver.nextAvailIndex == 0)
        try h.driver.add(readable: [BufferSegment(address: 0, length: .max), BufferSegment(address: 0, length: 1)], writable: [], token: 0)
    }

    @Test("GHT-DRV-03: a chain of several descriptors that does not fit is refused, and nothing is exposed")
    func linkedChainQueueFull() throws {
        var h = RingHarness(queueSize: 4)
        for t in 0..<3 { try h.driver.add(readable: [BufferSegment(address: 0, length: 1)], writable: [], token: UInt64(t)) }
        let two = [BufferSegment(address: 0, length: 1), BufferSegment(address: 1, length: 1)]
        #expect(throws: DriverQueueError.queueFull) { try h.driver.add(readable: two, writable: [], token: 9) }
        #expect(h.driver.freeDescriptorCount == 1)
        #expect(h.driver.nextAvailIndex == 3)
    }

    @Test("IND-DRV-03, SPL-DRV-02: indirect chains longer than a table or over 4 GiB are refused")
    func indirectRefused() throws {
        var h = RingHarness(queueSize: 8, features: [.version1, .indirectDescriptors], indirectTables: 2, entriesPerTable: 4)
        let five = (0..<5).map { BufferSegment(address: UInt64($0), length: 1) }
        #expect(throws: DriverQueueError.chainTooLong(segments: 5, limit: 4)) {
            try h.driver.add(readable: five, writable: [], token: 0, layout: .indirect)
        }
        let huge = [BufferSegment(address: 0, length: .max), BufferSegment(address: 0, length: 2)]
        #expect(throws: DriverQueueError.totalLengthOverflow) {
            try h.driver.add(readable: huge, writable: [], token: 0, layout: .indirect)
        }
        #expect(h.driver.freeDescriptorCount == 8)
        #expect(h.driver.nextAvailIndex == 0)
    }

    @Test("GHT-DRV-02: freed descriptors are reused first-in first-out")
    func fifoReuse() throws {
        var h = RingHarness(queueSize: 4)
        var order: [UInt16] = []
        for round in 0..<3 {
            let head = try h.driver.add(readable: [BufferSegment(address: 0, length: 1)], writable: [], token: UInt64(round))
            order.append(head)
            h.driver.publish()
            let chain = try #require(try h.device.popAvailable())
            h.device.addUsed(chain, length: 0)
            h.device.publishUsed()
            _ = try #require(try h.driver.reapUsed())
        }
        #expect(order == [0, 1, 2])
    }
}
