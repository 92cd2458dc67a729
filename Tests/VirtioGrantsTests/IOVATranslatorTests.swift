import Testing
import VirtioCore
import VirtioGrants
#if canImport(Glibc)
import Glibc
#endif

@Suite("IOVA translation (vhost-user IOTLB mode)", .tags(.grants))
struct IOVATranslatorTests {
    let memory = GuestMemoryRegion(size: 1 << 20)

    func host(_ offset: Int, _ size: Int) -> HostRange { memory.range.slice(offset: offset, length: size) }

    @Test("GHT-IOVA-01, IOM-DEV-01: updates map IOVA ranges to host memory with permissions")
    func updateAndTranslate() throws {
        let space = IOVASpace()
        try space.update(iova: 0x10_0000, size: 0x2000, host: host(0x4000, 0x2000), permissions: .readWrite)
        try space.update(iova: 0x20_0000, size: 0x1000, host: host(0x8000, 0x1000), permissions: .read)
        let cache = IOVACache(space: space)
        let t = cache.translator
        let r = try t.translate(0x10_0010, length: 16, access: .write)
        #expect(r.startAddress == memory.range.startAddress + 0x4010 && r.count == 16)
        // A second lookup hits the cache.
        _ = try t.translate(0x10_0020, length: 16, access: .write)
        #expect(cache.hits == 1 && cache.misses == 1)
        // Crossing the end of a range returns the part inside it.
        #expect(try t.translate(0x10_1FF0, length: 0x100, access: .read).count == 0x10)
        #expect(throws: TranslationFault(.permissionDenied, address: 0x20_0000, length: 4, access: .write)) {
            _ = try t.translate(0x20_0000, length: 4, access: .write)
        }
    }

    @Test("GHT-IOVA-07: a page still missing a timeout after its first report becomes a missUnanswered fault; reports are not repeated faster than the repeat interval; a mapping clears the record")
    func unansweredMiss() throws {
        let space = IOVASpace(missTimeoutMilliseconds: 100, missRepeatMilliseconds: 30)
        let cache = IOVACache(space: space)
        defer { withExtendedLifetime(cache) {} }
        let t = cache.translator
        func miss() { #expect(throws: TranslationFault(.notMapped, address: 0x7000, length: 8, access: .write)) { _ = try t.translate(0x7000, length: 8, access: .write) } }
        miss()
        #expect(space.takeMisses().map(\.iova) == [0x7000])
        miss()
        #expect(space.takeMisses().isEmpty, "reported just now: not again yet")
        usleep(40_000)
        miss()
        #expect(space.takeMisses().map(\.iova) == [0x7000], "the repeat interval passed")
        usleep(80_000)
        #expect(throws: TranslationFault(.missUnanswered, address: 0x7000, length: 8, access: .write)) { _ = try t.translate(0x7000, length: 8, access: .write) }
        try space.update(iova: 0x7000, size: 0x1000, host: host(0x7000, 0x1000), permissions: .readWrite)
        space.invalidate(iova: 0x7000, size: 0x1000)
        miss()
    }

    @Test("GHT-IOVA-08: an INVALIDATE of size 0 stands for 2^64 bytes: every mapping from its IOVA on goes")
    func invalidateSizeZero() throws {
        let space = IOVASpace()
        try space.update(iova: 0x1000, size: 0x1000, host: host(0x1000, 0x1000), permissions: .read)
        try space.update(iova: 0xFFFF_F000, size: 0x1000, host: host(0x2000, 0x1000), permissions: .read)
        space.invalidate(iova: 0x1000, size: 0)
        #expect(space.rangeCount == 0)
        try space.update(iova: 0x1000, size: 0x1000, host: host(0x1000, 0x1000), permissions: .read)
        try space.update(iova: 0x8000, size: 0x1000, host: host(0x2000, 0x1000), permissions: .read)
        space.invalidate(iova: 0x2000, size: 0)
        #expect(space.rangeCount == 1, "what lies below the IOVA stays")
    }

    @Test("GHT-IOVA-02: an unmapped IOVA is a miss: a typed fault, recorded once per page, bounded")
    func misses() throws {
        let space = IOVASpace(missCapacity: 2)
        let cache = IOVACache(space: space)   // a translator never outlives its cache
        defer { withExtendedLifetime(cache) {} }
        let t = cache.translator
        for _ in 0..<3 {
            #expect(throws: TranslationFault(.notMapped, address: 0x5000, length: 8, access: .read)) {
                _ = try t.translate(0x5000, length: 8, access: .read)
            }
        }
        _ = try? t.translate(0x5008, length: 8, access: .read)
        _ = try? t.translate(0x9000, length: 8, access: .write)
        _ = try? t.translate(0xA000, length: 8, access: .write)
        let pending = space.takeMisses()
        #expect(pending.map(\.iova) == [0x5000, 0x9000])
        #expect(space.droppedMisses == 1)
        #expect(space.takeMisses().isEmpty)
    }

    @Test("GHT-IOVA-03: an invalidation removes exactly the covered part; no stale translation survives it")
    func invalidate() throws {
        let space = IOVASpace()
        try space.update(iova: 0x1000, size: 0x4000, host: host(0, 0x4000), permissions: .readWrite)
        let cache = IOVACache(space: space)
        defer { withExtendedLifetime(cache) {} }
        let t = cache.translator
        _ = try t.translate(0x2000, length: 8, access: .read)   // cached
        space.invalidate(iova: 0x2000, size: 0x1000)
        #expect(throws: TranslationFault(.notMapped, address: 0x2000, length: 8, access: .read)) {
            _ = try t.translate(0x2000, length: 8, access: .read)
        }
        // The parts before and after survive, pointing where they did.
        #expect(try t.translate(0x1000, length: 8, access: .read).startAddress == memory.range.startAddress)
        #expect(try t.translate(0x3000, length: 8, access: .read).startAddress == memory.range.startAddress + 0x2000)
        #expect(space.rangeCount == 2)
        space.invalidateAll()
        #expect(throws: TranslationFault(.notMapped, address: 0x1000, length: 8, access: .read)) {
            _ = try t.translate(0x1000, length: 8, access: .read)
        }
    }

    @Test("GHT-IOVA-04: an update replaces what it overlaps; bad updates are refused")
    func overlapAndRefusals() throws {
        let space = IOVASpace(capacity: 4)
        try space.update(iova: 0x1000, size: 0x3000, host: host(0, 0x3000), permissions: .read)
        try space.update(iova: 0x2000, size: 0x1000, host: host(0x8000, 0x1000), permissions: .write)
        let cache = IOVACache(space: space)
        defer { withExtendedLifetime(cache) {} }
        let t = cache.translator
        #expect(try t.translate(0x2000, length: 4, access: .write).startAddress == memory.range.startAddress + 0x8000)
        #expect(try t.translate(0x3000, length: 4, access: .read).startAddress == memory.range.startAddress + 0x2000)
        #expect(space.rangeCount == 3)
        #expect(throws: IOVAError.invalidRange(iova: 0, size: 0)) { try space.update(iova: 0, size: 0, host: host(0, 0), permissions: .read) }
        #expect(throws: IOVAError.invalidRange(iova: .max, size: 2)) { try space.update(iova: .max, size: 2, host: host(0, 2), permissions: .read) }
        #expect(throws: IOVAError.sizeMismatch(iova: 0, size: 8, host: 4)) { try space.update(iova: 0, size: 8, host: host(0, 4), permissions: .read) }
        #expect(throws: IOVAError.noPermission(iova: 0)) { try space.update(iova: 0, size: 8, host: host(0, 8), permissions: []) }
        try space.update(iova: 0x10000, size: 8, host: host(0, 8), permissions: .read)
        #expect(throws: IOVAError.full) { try space.update(iova: 0x20000, size: 8, host: host(0, 8), permissions: .read) }
    }

    @Test("GHT-IOVA-05: a split ring over IOVAs: rings translated once, buffers through the cache")
    func ringOverIOVA() throws {
        let region = GuestMemoryRegion(size: 1 << 20)
        let layout = SplitRingLayout(queueSize: 8)!
        let ring = try SplitRing(layout: layout, contiguous: region.range.slice(offset: 0, length: 4096))
        var driver = SplitDriverQueue(ring: ring, features: [.version1, .accessPlatform])
        let space = IOVASpace()
        // The IOMMU maps IOVA 0xF000_0000... onto the region.
        try space.update(iova: 0xF000_0000, size: 1 << 20, host: region.range, permissions: .readWrite)
        let cache = IOVACache(space: space)
        var device = try SplitDeviceQueue(queueSize: 8, addresses: SplitRingAddresses(contiguousAt: 0xF000_0000, layout: layout),
                                          memory: cache.translator, features: [.version1, .accessPlatform])
        region.write([5, 6, 7], at: 0x8000)
        try driver.add(readable: [BufferSegment(address: 0xF000_8000, length: 3)], writable: [BufferSegment(address: 0xF000_9000, length: 3)], token: 1)
        driver.publish()
        let chain = try #require(try device.popAvailable())
        var reader = device.reader(for: chain)
        let bytes = try reader.readBytes(3)
        var writer = device.writer(for: chain)
        try writer.write(contentsOf: bytes.map { $0 * 2 })
        device.addUsed(chain, length: writer.usedLength)
        device.publishUsed()
        #expect(try driver.reapUsed() == UsedBuffer(token: 1, writtenLength: 3))
        #expect(region.read(at: 0x9000, count: 3) == [10, 12, 14])
    }
}
