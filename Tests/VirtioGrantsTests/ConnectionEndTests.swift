import Testing
import VirtioConformance
import VirtioCore
import VirtioGrants

@Suite("Grant table: a mapping peer's connection ended", .tags(.grants))
struct ConnectionEndTests {
    @Test("GHT-RCN-07: releasing a gone peer's mappings clears only its in-use bits; the grants stay and can then be ended")
    func releasesOnlyThatPeer() throws {
        let h = GrantHarness()
        let other = DomainID(7)
        let reading = try h.table.grant(frame: 1, to: GrantHarness.backEnd, readOnly: true)
        let writing = try h.table.grant(frame: 2, to: GrantHarness.backEnd, readOnly: false)
        let unmapped = try h.table.grant(frame: 3, to: GrantHarness.backEnd, readOnly: false)
        let others = try h.table.grant(frame: 4, to: other, readOnly: false)
        // A mapper that dies holding its mappings (a killed back-end): the bits stay set.
        _ = try h.mapper.map(reading, access: .read)
        _ = try h.mapper.map(writing, access: .write)
        let othersMapper = GrantMapper(table: h.tableRegion.range, granter: GrantHarness.frontEnd, frames: h.frames.range, domain: other,
                                       owners: [h.tableRegion, h.frames])
        _ = try othersMapper.map(others, access: .write)
        #expect(try h.table.endAccess(reading) == .busy && h.table.entry(writing).flags.contains(.writing))

        #expect(h.table.releaseMappings(of: GrantHarness.backEnd) == 2)
        for ref in [reading, writing, unmapped] {
            #expect(h.table.entry(ref).flags.isDisjoint(with: .inUse))
            #expect(h.table.entry(ref).flags.contains(.permitAccess), "the grants stay")
        }
        #expect(h.table.entry(others).flags.contains(.writing), "another peer's mapping is not touched")
        // The successor (a new mapper of the same domain) maps the same grants; once it unmaps,
        // everything ends.
        let successor = GrantMapper(table: h.tableRegion.range, granter: GrantHarness.frontEnd, frames: h.frames.range,
                                    domain: GrantHarness.backEnd, owners: [h.tableRegion, h.frames])
        let again = try successor.map(writing, access: .write)
        try successor.unmap(again)
        for ref in [reading, writing, unmapped] { #expect(try h.table.endAccess(ref) == .ended) }
        #expect(try h.table.endAccess(others) == .busy)
    }
}
