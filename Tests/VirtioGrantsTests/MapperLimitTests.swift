import Testing
import VirtioCore
import VirtioGrants
import VirtioConformance

/// `limits.md` §2 at the mapper: its bookkeeping follows the references mapped, not the size of
/// the table the granter declared.
@Suite("The mapper's bookkeeping is bounded by what is mapped", .tags(.grants, .hostile))
struct MapperLimitTests {
    @Test("GHT-LIM-21: counts live only for mapped references: random maps and unmaps over a large table agree with a model, in-use bits included, and the counts' table stays small")
    func countsFollowMappings() throws {
        let g = GrantHarness(frameCount: 64, tableEntries: 1 << 16)
        var refs: [GrantReference] = []
        for k in 0..<300 { refs.append(try g.table.grant(frame: UInt32(k % 64), to: GrantHarness.backEnd, readOnly: false)) }
        #expect(g.mapper.mappedReferences == (0, 16), "nothing per entry of a 65536-entry table")
        var random = SystemRandomNumberGenerator()
        var live: [GrantMapping] = []
        var model: [GrantReference: (readers: Int, writers: Int)] = [:]
        for _ in 0..<4000 {
            if live.isEmpty || Int.random(in: 0..<5, using: &random) < 3 {
                let ref = refs.randomElement(using: &random)!
                let access: MemoryAccess = Bool.random(using: &random) ? .write : .read
                live.append(try g.mapper.map(ref, access: access))
                model[ref, default: (0, 0)].readers += access == .read ? 1 : 0
                model[ref, default: (0, 0)].writers += access == .write ? 1 : 0
            } else {
                let m = live.remove(at: Int.random(in: 0..<live.count, using: &random))
                try g.mapper.unmap(m)
                model[m.reference]!.readers -= m.access == .read ? 1 : 0
                model[m.reference]!.writers -= m.access == .write ? 1 : 0
                if model[m.reference]! == (0, 0) { model[m.reference] = nil }
            }
        }
        for ref in refs {
            let expected = model[ref] ?? (0, 0)
            #expect(g.mapper.mappingCount(ref) == expected)
            let flags = g.table.entry(ref).flags
            #expect(flags.contains(.reading) == (expected.readers > 0) && flags.contains(.writing) == (expected.writers > 0))
        }
        #expect(g.mapper.mappedReferences.count == model.count)
        #expect(g.mapper.mappedReferences.capacity <= 1024, "at most twice the peak of 300 mapped references, rounded up")
        for m in live { try g.mapper.unmap(m) }
        #expect(g.mapper.mappedReferences.count == 0)
        for ref in refs { #expect(try g.table.endAccess(ref) == .ended) }
    }

    @Test("GHT-LIM-22: a revocation of a range waits only for the mapped references in it, whether the range is smaller or larger than what is mapped; a range past the table is clamped")
    func rangeRevocation() throws {
        let g = GrantHarness(frameCount: 64, tableEntries: 1 << 16)
        var refs: [GrantReference] = []
        for k in 0..<40 { refs.append(try g.table.grant(frame: UInt32(k), to: GrantHarness.backEnd, readOnly: false)) }
        let a = try g.mapper.map(refs[3], access: .read), b = try g.mapper.map(refs[30], access: .write)
        let low = refs[0].rawValue
        // A range smaller than the counts' table: walked reference by reference.
        g.mapper.requestRevoke(low..<low + 10)
        #expect(g.mapper.isRevoking(refs[3]) && !g.mapper.isRevoking(refs[30]))
        #expect(g.mapper.isRevoking(anyIn: low..<low + 10) && !g.mapper.isRevoking(anyIn: low + 10..<low + 20))
        #expect(throws: GrantFault.revoked(refs[3])) { _ = try g.mapper.map(refs[3], access: .read) }
        // The whole reference space: walked over the mapped references instead.
        g.mapper.requestRevoke(0..<UInt32.max)
        #expect(g.mapper.isRevoking(refs[30]))
        #expect(!g.mapper.isRevoking(refs[5]), "not mapped: revoked at once")
        try g.mapper.unmap(a)
        try g.mapper.unmap(b)
        #expect(!g.mapper.isRevoking(anyIn: 0..<UInt32.max))
        #expect(Set(g.mapper.takeCompletedRevocations()) == [refs[3], refs[30]])
    }
}
