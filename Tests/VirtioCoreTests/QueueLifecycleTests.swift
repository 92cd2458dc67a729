import Testing
import VirtioCore

@Suite("Queue reset, chain storage and chain access", .tags(.ring))
struct QueueLifecycleTests {
    @Test("GHT-RST-01, QRST-DEV-02: a reset returns the device side to defaults and drops chains in flight")
    func deviceReset() throws {
        var h = RingHarness(queueSize: 8)
        for i in 0..<3 { h.writeDescriptor(i, address: RingHarness.page(i), length: 4) }
        h.makeAvailable([0, 1, 2])
        let old = try #require(try h.device.popAvailable())
        _ = try h.device.popAvailable()
        #expect(h.device.inFlightCount == 2)
        h.device.reset()
        #expect(h.device.inFlightCount == 0)
        #expect(h.device.nextAvailIndex == 0 && h.device.nextUsedIndex == 0)
        h.device.addUsed(old, length: 0)   // a chain of the previous epoch: ignored
        #expect(h.device.nextUsedIndex == 0)
        // The driver re-initializes the ring; the first request at index 0 is processed.
        h.ring.zero()
        h.writeDescriptor(0, address: RingHarness.page(5), length: 4)
        h.makeAvailable([0])
        let chain = try #require(try h.device.popAvailable())
        #expect(chain.segments.array == [ChainSegment(address: RingHarness.page(5), length: 4, isWritable: false)])
    }

    @Test("GHT-RST-01: a reset clears the broken state")
    func resetClearsBroken() throws {
        var h = RingHarness(queueSize: 8)
        h.makeAvailable([9])
        #expect(throws: VirtqueueError.headOutOfRange(9)) { _ = try h.device.popAvailable() }
        h.device.reset()
        #expect(!h.device.isBroken && h.device.failure == nil)
        h.ring.zero()
        #expect(try h.device.popAvailable() == nil)
    }

    @Test("CLN-DRV-02: after a reset the driver takes every outstanding chain back")
    func driverDetachAll() throws {
        var h = RingHarness(queueSize: 8)
        for t in 0..<3 { try h.driver.add(readable: [BufferSegment(address: 0, length: 1)], writable: [], token: UInt64(t)) }
        h.driver.publish()
        #expect(Set(h.driver.detachAllOutstanding()) == [0, 1, 2])
        #expect(h.driver.freeDescriptorCount == 8 && h.driver.outstandingCount == 0)
        #expect(h.ring.availRing.loadIndex() == 0)
    }

    @Test("GHT-CHN-05: long chains use overflow storage; when it runs out popping waits without consuming")
    func overflowBackpressure() throws {
        // Overflow for 2 blocks only: a 9-segment chain needs 2 overflow blocks.
        var h = RingHarness(queueSize: 32, overflowBlocks: 2)
        func post(_ token: UInt64) throws {
            let segments = (0..<9).map { BufferSegment(address: RingHarness.page(Int(token) * 9 + $0), length: 4) }
            try h.driver.add(readable: segments, writable: [], token: token)
        }
        try post(0)
        try post(1)
        h.driver.publish()
        let first = try #require(try h.device.popAvailable())
        #expect(first.segmentCount == 9)
        #expect(first.segments.array.map(\.address) == (0..<9).map { RingHarness.page($0) })
        #expect(try h.device.popAvailable() == nil, "no overflow block left")
        #expect(h.device.nextAvailIndex == 1, "the second chain was not consumed")
        h.device.addUsed(first, length: 0)
        let second = try #require(try h.device.popAvailable())
        #expect(second.segments.array.map(\.address) == (9..<18).map { RingHarness.page($0) })
    }

    @Test("IND-DEV-01, GHT-VAL-14: the WRITE flag on the descriptor pointing to a table is ignored")
    func indirectWriteFlagIgnored() throws {
        var h = RingHarness(queueSize: 8, features: [.version1, .indirectDescriptors])
        h.writeIndirectTable(at: RingHarness.indirectBase, [Descriptor(address: RingHarness.page(0), length: 4, flags: .next, next: 1),
                                                            Descriptor(address: RingHarness.page(1), length: 8, flags: .write)])
        h.writeDescriptor(0, address: RingHarness.indirectBase, length: 32, flags: [.indirect, .write])
        h.makeAvailable([0])
        let chain = try #require(try h.device.popAvailable())
        #expect(chain.readableSegmentCount == 1 && chain.readableLength == 4 && chain.writableLength == 8)
    }

    @Test("IND-DEV-02: ordinary descriptors followed by one INDIRECT descriptor form one chain")
    func directThenIndirect() throws {
        var h = RingHarness(queueSize: 8, features: [.version1, .indirectDescriptors])
        h.region.write([1, 2], at: RingHarness.page(0))
        h.region.write([3, 4, 5], at: RingHarness.page(1))
        h.writeIndirectTable(at: RingHarness.indirectBase + 8, [Descriptor(address: RingHarness.page(1), length: 3, flags: .next, next: 1),
                                                                Descriptor(address: RingHarness.page(2), length: 1, flags: .write)])
        h.writeDescriptor(3, address: RingHarness.page(0), length: 2, flags: .next, next: 6)
        h.writeDescriptor(6, address: RingHarness.indirectBase + 8, length: 32, flags: .indirect)   // unaligned table: still one fetch per entry
        h.makeAvailable([3])
        let chain = try #require(try h.device.popAvailable())
        var reader = h.device.reader(for: chain)
        #expect(try reader.readBytes(5) == [1, 2, 3, 4, 5])
        var writer = h.device.writer(for: chain)
        try writer.write(UInt8(0xAB))
        h.device.addUsed(chain, length: writer.usedLength)
        #expect(h.region.read(at: RingHarness.page(2), count: 1) == [0xAB])
    }

    @Test("SPL-DEV-01, GHT-CHN-03: the writer never writes a device-readable segment")
    func writerSkipsReadable() throws {
        var h = RingHarness(queueSize: 8)
        h.region.write([UInt8](repeating: 7, count: 16), at: RingHarness.page(0))
        try h.driver.add(readable: [BufferSegment(address: RingHarness.page(0), length: 16)],
                         writable: [BufferSegment(address: RingHarness.page(1), length: 4)], token: 1)
        h.driver.publish()
        let chain = try #require(try h.device.popAvailable())
        var writer = h.device.writer(for: chain)
        #expect(writer.capacity == 4)
        #expect(throws: ChainAccessError.endOfChain(needed: 8, available: 4)) { try writer.write(UInt64(0)) }
        let n = try [UInt8](repeating: 1, count: 100).withUnsafeBytes { try writer.write($0) }
        #expect(n == 4)
        #expect(h.region.read(at: RingHarness.page(0), count: 16) == [UInt8](repeating: 7, count: 16))
        #expect(h.region.read(at: RingHarness.page(1), count: 4) == [1, 1, 1, 1])
    }

    @Test("GHT-CHN-02: typed reads are little-endian, cross descriptors, and stop at the end")
    func readerIntegers() throws {
        var h = RingHarness(queueSize: 8)
        h.region.write([0x01, 0x02, 0x03], at: RingHarness.page(0))
        h.region.write([0x04, 0x05], at: RingHarness.page(1))
        try h.driver.add(readable: [BufferSegment(address: RingHarness.page(0), length: 3), BufferSegment(address: 0, length: 0),
                                    BufferSegment(address: RingHarness.page(1), length: 2)], writable: [], token: 1)
        h.driver.publish()
        let chain = try #require(try h.device.popAvailable())
        var reader = h.device.reader(for: chain)
        #expect(reader.length == 5)
        #expect(try reader.read(UInt32.self) == 0x0403_0201)
        #expect(throws: ChainAccessError.endOfChain(needed: 2, available: 1)) { _ = try reader.read(UInt16.self) }
        #expect(reader.skip(10) == 1)
        #expect(reader.remaining == 0)
    }
}

@Suite("Giving a chain back", .tags(.ring))
struct GiveBackTests {
    @Test("GHT-IOVA-06: a chain given back is popped again, re-read and revalidated from shared memory; nothing stays in flight")
    func giveBackAndPopAgain() throws {
        var h = RingHarness(queueSize: 8, overflowBlocks: 2)
        // One direct descriptor, and a six-descriptor chain that needs an overflow block.
        try h.driver.add(readable: [BufferSegment(address: RingHarness.page(0), length: 16)], writable: [], token: 1)
        try h.driver.add(readable: (1...3).map { BufferSegment(address: RingHarness.page($0), length: 16) },
                         writable: (4...6).map { BufferSegment(address: RingHarness.page($0), length: 64) }, token: 2)
        h.driver.publish()
        let first = try #require(try h.device.popAvailable())
        let second = try #require(try h.device.popAvailable())
        #expect(h.device.inFlightCount == 2)
        h.device.giveBack(second)
        #expect(h.device.inFlightCount == 1)
        let again = try #require(try h.device.popAvailable())
        #expect(again.headIndex == second.headIndex && again.segmentCount == 6)
        #expect(Array(again.segments.map(\.address)) == (1...6).map { RingHarness.page($0) })
        h.device.giveBack(again)
        h.device.giveBack(first)   // not the last popped in ring order, but the same rewind: first is next again
        #expect(h.device.inFlightCount == 0)
        // Its overflow block came back: the long chain pops again and again without exhausting the arena.
        for _ in 0..<5 {
            let c = try #require(try h.device.popAvailable())
            #expect(c.headIndex == first.headIndex)
            h.device.giveBack(c)
        }
        // Revalidated: the driver rewrites the head into a loop; the next pop catches it.
        h.writeDescriptor(Int(first.headIndex), address: RingHarness.page(0), length: 16, flags: .next, next: first.headIndex)
        #expect(throws: VirtqueueError.self) { _ = try h.device.popAvailable() }
        do { let broken = h.device.isBroken; #expect(broken) }
    }
}
