import Testing
import VirtioCore

@Suite("Guest memory over several regions")
struct RegionMapTranslatorTests {
    let memory = GuestMemoryRegion(size: 1 << 16)

    func region(_ start: UInt64, _ offset: Int, _ size: Int) -> MappedRegion {
        MappedRegion(start: start, range: memory.range.slice(offset: offset, length: size))
    }

    @Test("GHT-MEM-03: addresses resolve inside their region; an access running past a region is returned in part")
    func lookup() throws {
        let map = try RegionMapTranslator(regions: [region(0x10_0000, 0x8000, 0x1000), region(0x1000, 0, 0x2000), region(0x3000, 0x2000, 0x1000)])
        #expect(map.regionCount == 3)
        #expect(try map.translate(0x1010, length: 8, access: .read).startAddress == memory.range.startAddress + 0x10)
        #expect(try map.translate(0x2FF0, length: 0x20, access: .read).count == 0x10, "the rest lies in the next region")
        #expect(try map.translate(0x3000, length: 0x10, access: .write).startAddress == memory.range.startAddress + 0x2000)
        #expect(try map.translate(0x10_0FFF, length: 1, access: .read).startAddress == memory.range.startAddress + 0x8FFF)
        for address: UInt64 in [0, 0xFFF, 0x4000, 0x10_1000, .max] {
            #expect(throws: TranslationFault(.outOfRange, address: address, length: 1, access: .read)) {
                _ = try map.translate(address, length: 1, access: .read)
            }
        }
    }

    @Test("GHT-MEM-03: overlapping, empty and overflowing regions are refused")
    func refusals() {
        #expect(throws: RegionMapError.overlapping(0x1000, 0x1800)) {
            _ = try RegionMapTranslator(regions: [region(0x1000, 0, 0x1000), region(0x1800, 0x4000, 0x1000)])
        }
        #expect(throws: RegionMapError.invalidRegion(0x1000, size: 0)) { _ = try RegionMapTranslator(regions: [region(0x1000, 0, 0)]) }
        #expect(throws: RegionMapError.invalidRegion(.max, size: 0x10)) { _ = try RegionMapTranslator(regions: [region(.max, 0, 0x10)]) }
    }

    @Test("GHT-CHN-01: a resolved chain spanning two regions yields one fragment per region, readable before writable")
    func resolveAcrossRegions() throws {
        let map = try RegionMapTranslator(regions: [region(0x1000, 0, 0x1000), region(0x2000, 0x4000, 0x1000)])
        let chainMemory = GuestMemoryRegion(size: 1 << 16)
        let layout = SplitRingLayout(queueSize: 4)!
        var driver = SplitDriverQueue(ring: try SplitRing(layout: layout, contiguous: chainMemory.range.slice(offset: 0, length: 4096)), features: [.version1])
        var device = try SplitDeviceQueue(queueSize: 4, addresses: SplitRingAddresses(contiguousAt: 0, layout: layout),
                                          memory: chainMemory.identityTranslator, features: [.version1])
        try driver.add(readable: [BufferSegment(address: 0x1F00, length: 0x200)], writable: [BufferSegment(address: 0x2800, length: 16)], token: 0)
        driver.publish()
        let chain = try #require(try device.popAvailable())
        var resolver = ChainResolver()
        let (readable, writable) = try resolver.resolve(chain, through: map)
        #expect(readable == 0..<2 && writable == 2..<3)
        #expect(resolver.fragments.map(\.count) == [0x100, 0x100, 16])
        var reader = FragmentReader(resolver.fragments, readable)
        memory.write(Array(repeating: 1, count: 0x100), at: 0xF00)
        memory.write(Array(repeating: 2, count: 0x100), at: 0x4000)
        #expect(try reader.readBytes(0x200) == Array(repeating: 1, count: 0x100) + Array(repeating: 2, count: 0x100))
        // A segment partly outside every region: the chain is refused and nothing of it is kept.
        try driver.add(readable: [BufferSegment(address: 0x2F00, length: 0x200)], writable: [], token: 1)
        driver.publish()
        let bad = try #require(try device.popAvailable())
        #expect(throws: VirtqueueError.memoryFault(TranslationFault(.outOfRange, address: 0x3000, length: 0x100, access: .read))) {
            _ = try resolver.resolve(bad, through: map)
        }
        #expect(resolver.fragments.count == 3)
    }
}
