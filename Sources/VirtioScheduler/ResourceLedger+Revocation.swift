extension ResourceLedger {
    /// Takes the claim `resource` (named exactly) away from `owner`, with its shares
    /// (GHT-LED-05). Not in use: gone now. In use: `.refuseIfInUse` throws
    /// ``LedgerError/inUse(_:users:)`` and changes nothing; `.deferIfInUse` marks it
    /// revocation-pending, so that no new use begins, not even the owner's, and the claim goes
    /// when its last use ends (see ``endUse(_:by:)``). Either way the claim is whole or gone,
    /// never half-revoked, and the refusal or deferral is in ``events``. A reservation is
    /// revoked the same way, by the back-end only (GHT-LED-04).
    public func revoke(_ resource: Resource, from owner: DomainID, mode: RevocationMode) throws(LedgerError) -> RevocationOutcome {
        try perform(.revoke, by: owner) { (b) throws(LedgerError) in try b.revoke(resource, from: owner, mode: mode) }
    }

    /// Settles the accounts of a domain that went away (GHT-LED-07): the uses it held end (its
    /// mappings went with it), which may complete pending revocations; shares naming it are
    /// removed; and each claim it owns is revoked, deferred while other domains still use it.
    /// Releasing the back-end releases its reservations too.
    @discardableResult
    public func release(domain: DomainID) -> ReleaseReport {
        withBook { $0.release(domain) }
    }
}

extension LedgerBook {
    /// GHT-LED-05: a claim in use is refused (nothing changes) or deferred (no new use, gone
    /// with its last use), both logged; never removed from under a use.
    mutating func revoke(_ r: Resource, from owner: DomainID, mode: RevocationMode) throws(LedgerError) -> RevocationOutcome {
        let slot = try managedSlot(r, by: owner)
        let claim = claims[slot]
        guard claim.isInUse else {
            claims.remove(slot)
            log.record(.revoked(r, owner: owner))
            return .revoked
        }
        let users = claim.users
        switch mode {
        case .refuseIfInUse:
            throw .inUse(r, users: users)
        case .deferIfInUse:
            if !claim.revocationPending {
                claims[slot].revocationPending = true
                log.record(.revocationDeferred(r, owner: owner, users: users))
            }
            return .deferred(users: users)
        }
    }

    /// GHT-LED-07: its uses end, shares naming it go, its claims are revoked (deferred while
    /// others use them). One pass over the claims in order, so the report is in order too.
    mutating func release(_ domain: DomainID) -> ReleaseReport {
        var report = ReleaseReport(domain: domain)
        var events: [LedgerEvent.Kind] = [.released(domain)]
        claims.update { claim in
            let r = claim.resource
            for (use, count) in claim.uses where use.domain == domain {
                report.usesEnded[Resource(kind: r.kind, range: use.range), default: 0] += count
                claim.uses[use] = nil
            }
            if claim.sharedWith.remove(domain) != nil { report.sharesRemoved.append(r) }
            if claim.revocationPending, !claim.isInUse {
                report.completedRevocations.append(r)
                events.append(.revocationCompleted(r, owner: claim.owner))
                return false
            }
            guard claim.owner == domain else { return true }
            guard claim.isInUse else {
                report.revoked.append(r)
                events.append(.revoked(r, owner: domain))
                return false
            }
            let users = claim.users
            if !claim.revocationPending {
                claim.revocationPending = true
                events.append(.revocationDeferred(r, owner: domain, users: users))
            }
            report.deferred[r] = users
            return true
        }
        for event in events { log.record(event) }
        return report
    }
}
