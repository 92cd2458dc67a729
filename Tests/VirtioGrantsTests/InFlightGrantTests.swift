import Testing
import VirtioCore
import VirtioGrants
import VirtioConformance

/// `hostile-peers.md` §2: a grant used by a chain in flight stays mapped, with its in-use bit
/// set, until the chain is completed or abandoned, whatever the IOTLB evicts meanwhile.
@Suite("Grants in use for the whole DMA", .tags(.grants, .hostile))
struct InFlightGrantTests {
    /// `count` references of the writable run that share one IOTLB slot, and their pages' offsets.
    static func conflicting(_ h: borrowing GrantedRingHarness, count: Int) throws -> [(ref: GrantReference, offset: Int)] {
        let slot = h.iotlb.slot(of: h.writableBase)
        let pages = (0..<GrantedRingHarness.writableFrames.count).filter { h.iotlb.slot(of: h.writableBase.advanced(by: $0)) == slot }
        try #require(pages.count >= count, "references hashing to one slot")
        return pages.prefix(count).map { (h.writableBase.advanced(by: $0), $0 * GrantHarness.pageSize) }
    }

    @Test("GHT-DMA-01: a batch whose later chains evict an earlier chain's grants keeps them mapped and marked, and end of access busy, until the chains completed")
    func conflictingBatch() throws {
        var h = try GrantedRingHarness(iotlbEntries: 4)
        let pages = try Self.conflicting(h, count: 4)
        for (k, page) in pages.enumerated() {
            try h.driver.add(readable: [], writable: [BufferSegment(address: h.handle(writable: true, offset: page.offset), length: 4096)],
                             token: UInt64(k))
        }
        h.driver.publish()
        // The back-end resolves the whole batch before the device writes any of it.
        var resolver = ChainResolver()
        var chains: [DescriptorChain] = []
        var writable: [Range<Int>] = []
        while let chain = try h.device.popAvailable() {
            writable.append(try resolver.resolve(chain, through: h.translator).writable)
            chains.append(chain)
        }
        #expect(chains.count == 4)
        #expect(!h.iotlb.contains(pages[0].ref) && h.iotlb.contains(pages[3].ref), "each chain evicted the one before")
        #expect(h.iotlb.parkedCount == 3)
        for page in pages {
            #expect(h.grants.table.entry(page.ref).flags.contains(.writing), "\(page.ref) keeps GTF_writing while its chain is in flight")
            #expect(try h.grants.table.endAccess(page.ref) == .busy, "the front-end cannot take \(page.ref) back yet")
        }
        // The device writes every page (still granted: the front-end could not reuse them), completes, and the queue quiesces.
        for (i, chain) in chains.enumerated() {
            var writer = FragmentWriter(resolver.fragments, writable[i])
            try writer.write(contentsOf: [UInt8](repeating: UInt8(i + 1), count: 4096))
            h.device.addUsed(chain, length: writer.usedLength)
        }
        h.device.publishUsed()
        for (i, page) in pages.enumerated() {
            #expect(h.grants.frames.read(at: h.frameAddress(writable: true, offset: page.offset), count: 1) == [UInt8(i + 1)])
        }
        h.iotlb.quiesce()
        #expect(h.iotlb.parkedCount == 0)
        for page in pages.dropLast() {
            #expect(h.grants.mapper.mappingCount(page.ref) == (0, 0))
            #expect(try h.grants.table.endAccess(page.ref) == .ended, "released once the chains completed")
        }
        // The cached one is a persistent grant: it goes when the front-end revokes it (GHT-TLB-01).
        #expect(try h.grants.table.endAccess(pages[3].ref) == .busy)
        h.grants.mapper.requestRevoke(pages[3].ref)
        h.iotlb.quiesce()
        #expect(try h.grants.table.endAccess(pages[3].ref) == .ended)
    }

    @Test("GHT-DMA-01: a reference the granter re-points while cached keeps its old page mapped until the quiescent point")
    func repointedReference() throws {
        let h = try GrantedRingHarness(iotlbEntries: 4)
        let ref = h.writableBase
        let t = h.translator
        let old = try t.translate(GrantHandle(reference: ref).rawValue, length: 8, access: .read)
        // A hostile granter points the mapped entry at another frame (keeping the in-use bit).
        var e = h.grants.table.entry(ref)
        e.frame += 1
        h.grants.table.entries.store(e, at: ref)
        let new = try t.translate(GrantHandle(reference: ref).rawValue, length: 8, access: .write)
        #expect(new.startAddress != old.startAddress)
        #expect(h.grants.mapper.mappingCount(ref) == (1, 1), "the old page's read mapping is parked, not dropped")
        #expect(h.grants.table.entry(ref).flags.contains(.reading))
        h.iotlb.quiesce()
        #expect(h.grants.mapper.mappingCount(ref) == (0, 1))
        #expect(!h.grants.table.entry(ref).flags.contains(.reading))
    }

    @Test("GHT-DMA-03: once half the parking list is used the translator asks for a quiescent point; the quiescent point empties it")
    func highWater() throws {
        let h = try GrantedRingHarness(iotlbEntries: 4)
        let pages = try Self.conflicting(h, count: 3)
        let t = h.iotlb.translator
        #expect(h.iotlb.parkingCapacity == 4)
        for page in pages {
            #expect(!t.wantsQuiescentPoint)
            _ = try t.translate(GrantHandle(reference: page.ref).rawValue, length: 1, access: .write)
        }
        #expect(h.iotlb.parkedCount == 2)
        #expect(t.wantsQuiescentPoint)
        h.iotlb.quiesce()
        #expect(!t.wantsQuiescentPoint)
        #expect(h.iotlb.statistics.parked == 2)
    }

    @Test("GHT-DMA-04: a miss that finds the parking list full is refused (exhausted); nothing in flight is unmapped; after the quiescent point it succeeds")
    func parkingFull() throws {
        let h = try GrantedRingHarness(iotlbEntries: 4)
        let pages = try Self.conflicting(h, count: 4)
        let iotlb = GrantIOTLB(mapper: h.grants.mapper, capacity: 4, parkingCapacity: 2)
        let t = iotlb.translator
        for page in pages.prefix(3) { _ = try t.translate(GrantHandle(reference: page.ref).rawValue, length: 1, access: .write) }
        let address = GrantHandle(reference: pages[3].ref).rawValue
        #expect(throws: TranslationFault(.exhausted, address: address, length: 1, access: .write)) {
            _ = try t.translate(address, length: 1, access: .write)
        }
        for page in pages.prefix(3) {
            #expect(h.grants.mapper.mappingCount(page.ref).writers == 1, "\(page.ref) stays mapped")
            #expect(h.grants.table.entry(page.ref).flags.contains(.writing))
        }
        #expect(iotlb.contains(pages[2].ref), "the refused miss evicted nothing")
        #expect(h.grants.mapper.mappingCount(pages[3].ref) == (0, 0))
        iotlb.quiesce()
        _ = try t.translate(address, length: 1, access: .write)
        #expect(h.grants.mapper.mappingCount(pages[0].ref) == (0, 0))
        iotlb.invalidateAll()
        for page in pages { #expect(h.grants.mapper.mappingCount(page.ref) == (0, 0)) }
    }
}
