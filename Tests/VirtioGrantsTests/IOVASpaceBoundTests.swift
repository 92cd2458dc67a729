import Testing
import VirtioCore
import VirtioGrants

@Suite("IOVA space: bounds and rebinding", .tags(.grants))
struct IOVASpaceBoundTests {
    let memory = GuestMemoryRegion(size: 1 << 20)
    let moved = GuestMemoryRegion(size: 1 << 20)

    func host(_ offset: Int, _ size: Int) -> HostRange { memory.range.slice(offset: offset, length: size) }

    func translate(_ space: IOVASpace, _ iova: UInt64, _ access: MemoryAccess = .read) -> UInt? {
        let cache = IOVACache(space: space)
        return withExtendedLifetime(cache) { cache.translator.resolve(iova, length: 1, access: access).range?.startAddress }
    }

    @Test("GHT-LIM-02: an invalidation inside a range of a full space removes the range's tail instead of splitting past the capacity")
    func invalidateCannotGrowPastCapacity() throws {
        let space = IOVASpace(capacity: 4)
        for i in 0..<4 { try space.update(iova: UInt64(i) * 0x10000, size: 0x4000, host: host(i * 0x10000, 0x4000), permissions: .read) }
        #expect(space.rangeCount == 4)
        space.invalidate(iova: 0x1000, size: 0x1000)   // the middle of range 0
        #expect(space.rangeCount == 4, "the split would have made 5")
        #expect(translate(space, 0x0000) != nil, "the head before the cut stays")
        #expect(translate(space, 0x1000) == nil, "the cut part is gone")
        #expect(translate(space, 0x2000) == nil, "the tail went with it: removing more than asked is safe")
        #expect(translate(space, 0x10000) != nil)
        // With room, the same cut splits exactly (GHT-IOVA-03).
        let roomy = IOVASpace(capacity: 8)
        try roomy.update(iova: 0, size: 0x4000, host: host(0, 0x4000), permissions: .read)
        roomy.invalidate(iova: 0x1000, size: 0x1000)
        #expect(roomy.rangeCount == 2 && translate(roomy, 0x2000) != nil)
    }

    @Test("GHT-LIM-03: report times are kept for a bounded number of pages, however many distinct pages miss")
    func missReportsAreBounded() throws {
        let space = IOVASpace(missCapacity: 8, reportCapacity: 16)
        let cache = IOVACache(space: space)
        withExtendedLifetime(cache) {
            for round in 0..<20 {
                for page in 0..<8 { _ = cache.translator.resolve(UInt64(round * 8 + page) << 12, length: 1, access: .read) }
                #expect(space.takeMisses().count == 8)
                #expect(space.reportedPageCount <= 16)
            }
        }
        #expect(space.reportedPageCount == 16)
    }

    @Test("GHT-LIFE-01: rebinding moves every range with a user address to its new host bytes and drops the rest, and no cached translation survives")
    func rebindFollowsTheMemory() throws {
        let space = IOVASpace()
        try space.update(iova: 0x10000, size: 0x2000, host: host(0x4000, 0x2000), userAddress: 0x7000_4000, permissions: .readWrite)
        try space.update(iova: 0x20000, size: 0x1000, host: host(0x8000, 0x1000), userAddress: 0x7000_8000, permissions: .read)
        try space.update(iova: 0x30000, size: 0x1000, host: host(0x9000, 0x1000), permissions: .read)   // no user address
        let cache = IOVACache(space: space)
        try withExtendedLifetime(cache) {
            #expect(cache.translator.resolve(0x10000, length: 1, access: .read).range?.startAddress == memory.range.startAddress + 0x4000)
            // The memory table changed: user 0x7000_0000 is now `moved`; 0x7000_8000 is in no region.
            space.rebind { user, size in
                guard user >= 0x7000_0000, user + size <= 0x7000_8000 else { return nil }
                return moved.range.slice(offset: Int(user - 0x7000_0000), length: Int(size))
            }
            #expect(space.rangeCount == 1)
            let r = try #require(cache.translator.resolve(0x11000, length: 1, access: .write).range)
            #expect(r.startAddress == moved.range.startAddress + 0x5000, "the cached page of the old mapping is not served")
            #expect(cache.translator.resolve(0x20000, length: 1, access: .read).range == nil)
            #expect(cache.translator.resolve(0x30000, length: 1, access: .read).range == nil)
        }
        // A split range keeps its user address in step.
        let split = IOVASpace()
        try split.update(iova: 0, size: 0x3000, host: host(0, 0x3000), userAddress: 0x7000_0000, permissions: .read)
        split.invalidate(iova: 0x1000, size: 0x1000)
        split.rebind { user, size in moved.range.slice(offset: Int(user - 0x7000_0000), length: Int(size)) }
        #expect(translate(split, 0x2000) == moved.range.startAddress + 0x2000)
    }
}
