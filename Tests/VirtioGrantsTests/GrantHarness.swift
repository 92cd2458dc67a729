import Testing
import VirtioCore
import VirtioGrants

/// A front-end (domain 1) granting pages of its region to a back-end (domain 0), both in one
/// process: the grant table and the granted frames live in guest memory regions.
struct GrantHarness {
    static let frontEnd = DomainID(1)
    static let backEnd = DomainID(0)
    static let pageSize = GrantHandle.pageSize

    let frames: GuestMemoryRegion
    let tableRegion: GuestMemoryRegion
    let table: GrantTable
    let mapper: GrantMapper

    init(frameCount: Int = 256, tableEntries: Int = 512, deferredCapacity: Int = 8, maxMappings: Int = 1 << 16) {
        frames = GuestMemoryRegion(size: frameCount * Self.pageSize)
        tableRegion = GuestMemoryRegion(size: tableEntries * GrantEntry.size)
        let tableRange = tableRegion.range.slice(offset: 0, length: tableEntries * GrantEntry.size)
        table = GrantTable(table: tableRange, domain: Self.frontEnd, frameCount: frameCount, deferredCapacity: deferredCapacity)
        mapper = GrantMapper(table: tableRange, granter: Self.frontEnd, frames: frames.range, domain: Self.backEnd, maxMappings: maxMappings,
                             owners: [tableRegion, frames])
    }

    /// The guest address of frame `f` in the front-end's region.
    func address(ofFrame f: UInt32) -> UInt64 { frames.guestBase + UInt64(f) * UInt64(Self.pageSize) }
}

extension Tag {
    @Tag static var grants: Self
    @Tag static var hostile: Self
}
