import VirtioCore

/// The resource accountant of the scheduler: a ledger in which every VF, queue, grant
/// reference range, memory region and eventfd the back-end hands out has exactly one owner.
///
/// Xen's iocap rangesets are permission lists: several domains may hold the same range, and
/// taking a permission away leaves existing mappings in place. This ledger is instead an
/// exclusive-ownership record: a claim overlapping another is refused whoever holds it
/// (GHT-LED-01); nothing is allowed that a claim does not allow (GHT-LED-02); the owner alone
/// lends use to named domains (GHT-LED-03); the back-end can keep resources for itself
/// (GHT-LED-04); and because it counts uses (mappings), a revocation never pulls a resource
/// from under a user: it is refused, changing nothing, or deferred until the last use ends
/// (GHT-LED-05). Refusals, deferrals and revocations go to a bounded event log; the whole
/// ledger can be dumped (GHT-LED-08).
///
/// Every operation takes one lock and either happens whole or throws, changing nothing.
public final class ResourceLedger: Sendable {
    private let book: Locked<LedgerBook>

    /// An empty ledger keeping the last `eventCapacity` events.
    public init(eventCapacity: Int = 1024) {
        book = Locked(LedgerBook(claims: ClaimTable(), log: EventLog(capacity: eventCapacity)))
    }

    /// Records `owner` as the one owner of `resource` (GHT-LED-01, GHT-LED-04). A claim
    /// overlapping any claim of the same kind is refused, even one of the same owner, even one
    /// only shared: overlapping claims would make "who owns this byte" ambiguous, and a guest
    /// never claims into a back-end reservation.
    public func claim(_ resource: Resource, for owner: DomainID) throws(LedgerError) {
        try perform(.claim, by: owner) { (b) throws(LedgerError) in try b.claim(resource, for: owner, reserved: false) }
    }

    /// Keeps `resource` for the back-end's own use (GHT-LED-04): no guest can claim any of it,
    /// and only the back-end shares or revokes it.
    public func reserve(_ resource: Resource) throws(LedgerError) {
        try perform(.reserve, by: .backEnd) { (b) throws(LedgerError) in try b.claim(resource, for: .backEnd, reserved: true) }
    }

    /// Lets `domains` use the claim `resource` (GHT-LED-03). Only its owner may, and only for
    /// use: a domain shared with cannot share further, revoke or claim. A claim being revoked
    /// takes no new shares. Naming the owner is refused (``LedgerError/shareWithOwner(_:owner:)``).
    public func share(_ resource: Resource, by owner: DomainID, with domains: Set<DomainID>) throws(LedgerError) {
        try perform(.share, by: owner) { (b) throws(LedgerError) in try b.share(resource, by: owner, with: domains) }
    }

    /// Takes back the share of `domains` in the claim `resource` (GHT-LED-03); domains not
    /// named in it are ignored. Refused, changing nothing, while any of them uses it: a share
    /// is never withdrawn from under a mapping (GHT-LED-05); end the uses or revoke instead.
    public func unshare(_ resource: Resource, by owner: DomainID, from domains: Set<DomainID>) throws(LedgerError) {
        try perform(.unshare, by: owner) { (b) throws(LedgerError) in try b.unshare(resource, by: owner, from: domains) }
    }

    /// Throws unless `domain` may use `resource` now (GHT-LED-02: default deny): one claim must
    /// cover it whole, be owned by or shared with `domain`, and not be on its way out.
    public func authorize(_ domain: DomainID, _ resource: Resource) throws(LedgerError) {
        try perform(.authorize, by: domain) { (b) throws(LedgerError) in _ = try b.authorizedSlot(domain, resource) }
    }

    /// Whether ``authorize(_:_:)`` would succeed; a question, so a "no" is not logged.
    public func isAllowed(_ domain: DomainID, _ resource: Resource) -> Bool {
        book.withLock { b in (try? b.authorizedSlot(domain, resource)) != nil }
    }

    /// Records that `domain` maps or otherwise uses `resource` (authorized first): while any
    /// use is open, the claim is not revoked from under it (GHT-LED-05). Uses nest: each
    /// needs its own ``endUse(_:by:)``.
    public func beginUse(_ resource: Resource, by domain: DomainID) throws(LedgerError) {
        try perform(.beginUse, by: domain) { (b) throws(LedgerError) in try b.beginUse(resource, by: domain) }
    }

    /// Ends one use `domain` began on exactly `resource`. Allowed even while the claim is being
    /// revoked: that is how a deferred revocation completes. A use never begun is refused
    /// (GHT-LED-06), so a count never goes below zero.
    @discardableResult
    public func endUse(_ resource: Resource, by domain: DomainID) throws(LedgerError) -> UseEndOutcome {
        try perform(.endUse, by: domain) { (b) throws(LedgerError) in try b.endUse(resource, by: domain) }
    }

    /// The last refusals, revocations and releases, oldest first (at most the capacity given
    /// at creation).
    public var events: [LedgerEvent] { book.withLock { $0.log.events } }

    /// How many events the log has dropped to stay bounded.
    public var droppedEventCount: UInt64 { book.withLock { $0.log.dropped } }

    /// Runs `body` under the lock; a refusal is logged (and changes nothing, since `body`
    /// checks before it changes).
    func perform<T: Sendable>(_ operation: LedgerOperation, by domain: DomainID,
                              _ body: (inout LedgerBook) throws(LedgerError) -> T) throws(LedgerError) -> T {
        try book.withLock { (b) throws(LedgerError) -> T in
            do throws(LedgerError) {
                return try body(&b)
            } catch {
                b.log.record(.refused(operation, by: domain, error))
                throw error
            }
        }
    }

    /// Runs `body` under the lock, for what cannot be refused.
    func withBook<T: Sendable>(_ body: (inout LedgerBook) -> T) -> T {
        book.withLock { body(&$0) }
    }
}

/// The ledger's state. Each mutating operation checks everything first and changes only after,
/// so a throw leaves it as it was.
struct LedgerBook: Sendable {
    var claims: ClaimTable
    var log: EventLog

    /// GHT-LED-01, GHT-LED-04: one owner per unit; guests never claim into a reservation.
    mutating func claim(_ r: Resource, for owner: DomainID, reserved: Bool) throws(LedgerError) {
        guard !r.range.isEmpty else { throw .emptyRange(r) }
        let overlapping = claims.overlapping(r)
        if owner.isGuest, overlapping.contains(where: \.reserved) { throw .reservedForBackEnd(r) }
        if let holder = overlapping.first { throw .alreadyOwned(r, by: holder.owner) }
        claims.insert(Claim(resource: r, owner: owner, reserved: reserved))
    }

    /// GHT-LED-03: only the owner shares, naming domains; nothing new for a claim on its way out.
    mutating func share(_ r: Resource, by owner: DomainID, with domains: Set<DomainID>) throws(LedgerError) {
        let slot = try managedSlot(r, by: owner)
        guard !claims[slot].revocationPending else { throw .revocationPending(r) }
        guard !domains.contains(owner) else { throw .shareWithOwner(r, owner: owner) }
        claims[slot].sharedWith.formUnion(domains)
    }

    /// GHT-LED-03, GHT-LED-05: only the owner unshares, and never from under a use.
    mutating func unshare(_ r: Resource, by owner: DomainID, from domains: Set<DomainID>) throws(LedgerError) {
        let slot = try managedSlot(r, by: owner)
        let named = claims[slot].sharedWith.intersection(domains)
        let users = claims[slot].users { named.contains($0) }
        guard users.isEmpty else { throw .inUse(r, users: users) }
        claims[slot].sharedWith.subtract(named)
    }

    /// The claim `r` names exactly, if `domain` may manage it (GHT-LED-03, GHT-LED-04): share,
    /// unshare or revoke it. A reservation is the back-end's alone.
    func managedSlot(_ r: Resource, by domain: DomainID) throws(LedgerError) -> ClaimTable.Slot {
        guard !r.range.isEmpty else { throw .emptyRange(r) }
        guard let slot = claims.exact(r) else { throw .noSuchClaim(r) }
        if claims[slot].reserved, domain != .backEnd { throw .reservedForBackEnd(r) }
        guard claims[slot].owner == domain else { throw .notOwner(domain, r) }
        return slot
    }

    /// GHT-LED-02: default deny. The one claim that covers `r` whole, if `domain` owns it or
    /// was named in a share of it; GHT-LED-05: never one being revoked.
    func authorizedSlot(_ domain: DomainID, _ r: Resource) throws(LedgerError) -> ClaimTable.Slot {
        guard !r.range.isEmpty else { throw .emptyRange(r) }
        guard let slot = claims.covering(r), claims[slot].permits(domain) else { throw .denied(domain, r) }
        guard !claims[slot].revocationPending else { throw .revocationPending(r) }
        return slot
    }

    mutating func beginUse(_ r: Resource, by domain: DomainID) throws(LedgerError) {
        let slot = try authorizedSlot(domain, r)
        claims[slot].uses[Claim.Use(domain: domain, range: r.range), default: 0] += 1
    }

    /// GHT-LED-06: only a use that was begun ends, and a count that reaches zero is removed,
    /// never kept at zero or below. GHT-LED-05: the last use of a claim being revoked
    /// completes the revocation.
    mutating func endUse(_ r: Resource, by domain: DomainID) throws(LedgerError) -> UseEndOutcome {
        guard !r.range.isEmpty else { throw .emptyRange(r) }
        let use = Claim.Use(domain: domain, range: r.range)
        guard let slot = claims.covering(r), let count = claims[slot].uses[use], count > 0 else { throw .notInUse(domain, r) }
        claims[slot].uses[use] = count > 1 ? count - 1 : nil
        let claim = claims[slot]
        guard claim.revocationPending, !claim.isInUse else { return .ended }
        claims.remove(slot)
        log.record(.revocationCompleted(claim.resource, owner: claim.owner))
        return .revocationCompleted(claim.resource)
    }
}
