import Testing
import VirtioCore

/// The split device's path for chains of two direct descriptors, which skips the general walk:
/// the same chains and the same violations as the walk (Spec/transport.md §4), and a longer
/// chain handed on to the walk with the second descriptor as read.
@Suite("Split chains of two descriptors", .tags(.ring, .hostile))
struct ChainPairTests {
    func pop(_ h: inout RingHarness) throws -> DescriptorChain {
        try #require(try h.device.popAvailable())
    }

    @Test("GHT-VAL-11: each direction pair gives its segments, counts and lengths", arguments: [
        (DescriptorFlags(), DescriptorFlags(), 2), (DescriptorFlags(), DescriptorFlags.write, 1), (DescriptorFlags.write, DescriptorFlags.write, 0),
    ])
    func directions(first: DescriptorFlags, second: DescriptorFlags, readable: Int) throws {
        var h = RingHarness(queueSize: 8)
        h.writeDescriptor(3, address: RingHarness.page(0), length: 10, flags: first.union(.next), next: 6)
        h.writeDescriptor(6, address: RingHarness.page(1), length: 20, flags: second)
        h.makeAvailable([3])
        let chain = try pop(&h)
        let segments = chain.segments.array
        #expect(chain.headIndex == 3 && chain.segmentCount == 2 && chain.readableSegmentCount == readable)
        #expect(segments == [ChainSegment(address: RingHarness.page(0), length: 10, isWritable: first.contains(.write)),
                             ChainSegment(address: RingHarness.page(1), length: 20, isWritable: second.contains(.write))])
        let lengths = (chain.readableLength, chain.writableLength)
        #expect(lengths.0 == [0, 10, 30][readable] && lengths.1 == 30 - lengths.0)
        h.device.addUsed(chain, length: UInt32(lengths.1))
        h.device.publishUsed()
        #expect(h.ring.usedRing.loadIndex() == 1)
    }

    @Test("GHT-VAL-12: two descriptors whose lengths add up to more than 2^32 break the queue")
    func pairOverflow() throws {
        var h = RingHarness(queueSize: 8)
        h.writeDescriptor(0, address: 0, length: .max, flags: .next, next: 1)
        h.writeDescriptor(1, address: 0, length: 2)
        h.makeAvailable([0])
        #expect(throws: VirtqueueError.totalLengthOverflow) { _ = try h.device.popAvailable() }
        let broken = h.device.isBroken
        #expect(broken)
    }

    @Test("GHT-VAL-05: in a ring of one descriptor, a head that links to itself ends at the bound")
    func ringOfOne() throws {
        var h = RingHarness(queueSize: 1)
        h.writeDescriptor(0, address: RingHarness.page(0), length: 8, flags: .next, next: 0)
        h.makeAvailable([0])
        #expect(throws: VirtqueueError.chainTooLong(limit: 1)) { _ = try h.device.popAvailable() }
    }

    @Test("GHT-MEM-02, GHT-CHN-04: a chain of five goes on from its second descriptor through the walk and the overflow block")
    func longerChain() throws {
        var h = RingHarness(queueSize: 8)
        for i in 0..<5 {
            h.writeDescriptor(i, address: RingHarness.page(i), length: UInt32(1 + i), flags: i < 4 ? [.write, .next] : .write, next: UInt16(i + 1))
        }
        h.makeAvailable([0])
        let chain = try pop(&h)
        // The driver rewrites the second descriptor after the pop: the chain is the one read.
        h.writeDescriptor(1, address: RingHarness.page(7), length: 99, flags: .write)
        let expected = (0..<5).map { ChainSegment(address: RingHarness.page($0), length: UInt32(1 + $0), isWritable: true) }
        #expect(chain.segments.array == expected)
        #expect(chain.writableLength == 15 && chain.readableSegmentCount == 0)
        h.device.addUsed(chain, length: 15)
    }
}
