/// One claim as the ledger holds it: its owner, whom it is shared with, who uses it now.
struct Claim: Sendable {
    /// A use: the domain, and the exact range it began on, so that only that domain ending
    /// that range ends it (GHT-LED-06).
    struct Use: Hashable, Sendable {
        let domain: DomainID
        let range: Range<UInt64>
    }

    let resource: Resource
    let owner: DomainID
    let reserved: Bool
    var sharedWith: Set<DomainID> = []
    /// Every count is at least 1: a use that ends its last count is removed.
    var uses: [Use: Int] = [:]
    var revocationPending = false

    var range: Range<UInt64> { resource.range }
    var isInUse: Bool { !uses.isEmpty }

    /// The use counts per domain.
    var users: [DomainID: Int] { users(where: { _ in true }) }

    func users(where include: (DomainID) -> Bool) -> [DomainID: Int] {
        var result: [DomainID: Int] = [:]
        for (use, count) in uses where include(use.domain) { result[use.domain, default: 0] += count }
        return result
    }

    /// Whether `domain` may use the claim, revocation aside (GHT-LED-02).
    func permits(_ domain: DomainID) -> Bool { domain == owner || sharedWith.contains(domain) }

    var entry: LedgerEntry {
        LedgerEntry(resource: resource, owner: owner, reserved: reserved, sharedWith: sharedWith.sorted(),
                    users: users, revocationPending: revocationPending)
    }
}

/// The claims of each kind, sorted by start. Claims of one kind never overlap (GHT-LED-01), so
/// the one claim that may cover a range, and the claims that overlap it, are found by binary
/// search.
struct ClaimTable: Sendable {
    /// Where a claim is: valid until the table next changes shape (insert or remove).
    struct Slot {
        let kind: Int
        let index: Int
    }

    private var byKind = [[Claim]](repeating: [], count: ResourceKind.allCases.count)

    subscript(slot: Slot) -> Claim {
        get { byKind[slot.kind][slot.index] }
        set { byKind[slot.kind][slot.index] = newValue }
    }

    /// The claims of `r`'s kind that share a unit with it, in order.
    func overlapping(_ r: Resource) -> ArraySlice<Claim> {
        let claims = byKind[r.kind.order]
        var first = Self.count(claims) { $0.range.lowerBound < r.range.lowerBound }
        if first > 0, claims[first - 1].range.upperBound > r.range.lowerBound { first -= 1 }
        var end = first
        while end < claims.count, claims[end].range.lowerBound < r.range.upperBound { end += 1 }
        return claims[first..<end]
    }

    /// The one claim that covers all of `r`, if any.
    func covering(_ r: Resource) -> Slot? {
        let kind = r.kind.order
        let after = Self.count(byKind[kind]) { $0.range.lowerBound <= r.range.lowerBound }
        guard after > 0, byKind[kind][after - 1].resource.covers(r) else { return nil }
        return Slot(kind: kind, index: after - 1)
    }

    /// The claim that is exactly `r`, if any.
    func exact(_ r: Resource) -> Slot? {
        guard let slot = covering(r), self[slot].resource == r else { return nil }
        return slot
    }

    /// Adds a claim the caller checked overlaps nothing.
    mutating func insert(_ claim: Claim) {
        let kind = claim.resource.kind.order
        let at = Self.count(byKind[kind]) { $0.range.lowerBound < claim.resource.range.lowerBound }
        byKind[kind].insert(claim, at: at)
    }

    mutating func remove(_ slot: Slot) {
        byKind[slot.kind].remove(at: slot.index)
    }

    /// Calls `body` on every claim in order; those it returns false for are removed.
    mutating func update(_ body: (inout Claim) -> Bool) {
        for kind in byKind.indices {
            var kept: [Claim] = []
            kept.reserveCapacity(byKind[kind].count)
            for var claim in byKind[kind] {
                if body(&claim) { kept.append(claim) }
            }
            byKind[kind] = kept
        }
    }

    /// Every claim, by kind and then start.
    var all: [Claim] { byKind.flatMap { $0 } }

    /// How many claims from the front satisfy `isBefore`, which holds for a prefix of the
    /// sorted claims and fails for the rest.
    private static func count(_ claims: [Claim], _ isBefore: (Claim) -> Bool) -> Int {
        var low = 0, high = claims.count
        while low < high {
            let mid = low + (high - low) / 2
            if isBefore(claims[mid]) { low = mid + 1 } else { high = mid }
        }
        return low
    }
}
