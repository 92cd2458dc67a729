/// Why the granting side refused an operation (its own caller's mistake or a limit).
public enum GrantTableError: Error, Hashable, Sendable {
    /// No free reference (or no run of consecutive free references) is left in the table.
    case tableFull(requested: Int)
    /// The peer already holds its quota of grants.
    case quotaExceeded(peer: DomainID, limit: Int)
    /// The frame lies outside the granting domain's shared region.
    case frameOutOfRange(UInt32)
    /// The reference is not currently granted by this table.
    case notGranted(GrantReference)
    /// The deferred-release list is full; the grant stays in use (and is not reused).
    case deferredListFull(GrantReference)
    /// The peer is the granting domain itself.
    case selfGrant
}

/// The outcome of ending access to a grant.
public enum EndAccessResult: Hashable, Sendable {
    /// The entry was cleared (compare-and-swap won): the peer can no longer map it, and the
    /// reference is free for reuse.
    case ended
    /// The peer still holds a mapping (GTF_reading or GTF_writing is set): nothing changed.
    case busy
    /// The peer still holds a mapping; the reference was queued for deferred release.
    case deferred
}

/// Why the mapping side refused to map, unmap or copy a grant: the granter's entry does not
/// permit it, or the request itself is bad. Each case breaks only the operation (and, through
/// the translator, the queue) that met it.
public enum GrantFault: Error, Hashable, Sendable {
    /// The reference is outside the grant table.
    case badReference(GrantReference)
    /// The entry does not permit access (type is not GTF_permit_access).
    case notGranted(GrantReference)
    /// The entry grants access to another domain.
    case wrongDomain(GrantReference, grantee: DomainID)
    /// Write access through a read-only grant.
    case readOnly(GrantReference)
    /// The entry's frame lies outside the granting domain's shared region.
    case frameOutOfRange(GrantReference, frame: UInt32)
    /// The front-end asked for the grant back; no new mapping is made.
    case revoked(GrantReference)
    /// The entry uses a feature this transport refuses (transitive, transfer, sub-page).
    case unsupported(GrantReference, flags: UInt16)
    /// The mapping side's limits are reached (per-reference count or mapping table).
    case tooManyMappings(GrantReference)
    /// An unmap of a mapping that does not exist (already unmapped: refcounts never underflow).
    case notMapped(GrantReference)
    /// The entry kept changing under the mapper (a hostile granter flipping it); given up.
    case contended(GrantReference)
    /// A copy that is longer than the page, or crosses the page boundary.
    case badCopy(GrantReference, offset: Int, length: Int)
    /// The IOTLB's list of evicted mappings that chains in flight may still use is full
    /// (GHT-DMA-04): the reference named here stays mapped, and the translation that needed
    /// its slot is refused.
    case inFlightLimit(GrantReference)

    /// The reference the fault is about.
    public var reference: GrantReference {
        switch self {
        case .badReference(let r), .notGranted(let r), .wrongDomain(let r, _), .readOnly(let r), .frameOutOfRange(let r, _),
             .revoked(let r), .unsupported(let r, _), .tooManyMappings(let r), .notMapped(let r), .contended(let r),
             .badCopy(let r, _, _), .inFlightLimit(let r):
            return r
        }
    }
}
