import VirtioCore
import VirtioGrants

/// A front-end (domain 1) granting pages of its region to a back-end (domain 0), both in one
/// process: the grant table (Xen `grant_entry_v1`, `transport.md` §6.1) and the granted frames
/// live in guest memory regions, so a test can also write grant entries by hand — a hostile
/// front-end flipping flags or domids under the mapper (``table`` and ``tableRegion``).
public struct GrantHarness {
    public static let frontEnd = DomainID(1)
    public static let backEnd = DomainID(0)
    public static let pageSize = GrantHandle.pageSize

    public let frames: GuestMemoryRegion
    public let tableRegion: GuestMemoryRegion
    /// The granting side.
    public let table: GrantTable
    /// The mapping side, as the back-end holds it.
    public let mapper: GrantMapper

    public init(frameCount: Int = 256, tableEntries: Int = 512, deferredCapacity: Int = 8, maxMappings: Int = 1 << 16) {
        frames = GuestMemoryRegion(size: frameCount * Self.pageSize)
        tableRegion = GuestMemoryRegion(size: tableEntries * GrantEntry.size)
        let tableRange = tableRegion.range.slice(offset: 0, length: tableEntries * GrantEntry.size)
        table = GrantTable(table: tableRange, domain: Self.frontEnd, frameCount: frameCount, deferredCapacity: deferredCapacity)
        mapper = GrantMapper(table: tableRange, granter: Self.frontEnd, frames: frames.range, domain: Self.backEnd, maxMappings: maxMappings,
                             owners: [tableRegion, frames])
    }

    /// The guest address of frame `f` in the front-end's region.
    public func address(ofFrame f: UInt32) -> UInt64 { frames.guestBase + UInt64(f) * UInt64(Self.pageSize) }
}
