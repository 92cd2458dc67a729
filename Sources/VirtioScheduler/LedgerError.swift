/// Why the ledger refused an operation. A refusal changes nothing in the ledger and is also
/// recorded in ``ResourceLedger/events``, so a refused request is reported even when the caller
/// drops the error.
public enum LedgerError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The resource covers nothing (a zero count or length, or a value no range can hold).
    case emptyRange(Resource)
    /// The resource overlaps a claim of `by` (GHT-LED-01): one owner per unit, so a second
    /// claim is refused whoever asks, the holder included, and whether or not it is shared.
    case alreadyOwned(Resource, by: DomainID)
    /// The resource overlaps a reservation of the back-end, which a guest never claims, shares
    /// or revokes (GHT-LED-04).
    case reservedForBackEnd(Resource)
    /// No claim is exactly this resource: sharing and revoking name a whole claim, not part of
    /// one, so that a claim is never split.
    case noSuchClaim(Resource)
    /// The domain does not own the claim, so it may not share, unshare or revoke it
    /// (GHT-LED-03): a share gives use only.
    case notOwner(DomainID, Resource)
    /// The claim is being revoked (deferred while in use): it gives no new use and takes no
    /// new shares (GHT-LED-05).
    case revocationPending(Resource)
    /// No single claim covering the resource is owned by the domain or shared with it
    /// (GHT-LED-02: default deny).
    case denied(DomainID, Resource)
    /// The domain has no use of exactly this resource to end (GHT-LED-06): a count never goes
    /// below zero.
    case notInUse(DomainID, Resource)
    /// The resource is in use (mapped) by these domains, with their counts; a revocation or
    /// unshare that would pull it from under them was refused and changed nothing (GHT-LED-05).
    case inUse(Resource, users: [DomainID: Int])
    /// The owner named itself in a share: it holds every right a share gives already, so the
    /// request shows a caller whose bookkeeping went wrong.
    case shareWithOwner(Resource, owner: DomainID)

    /// The resource the refusal is about.
    public var resource: Resource {
        switch self {
        case .emptyRange(let r), .alreadyOwned(let r, _), .reservedForBackEnd(let r), .noSuchClaim(let r),
             .notOwner(_, let r), .revocationPending(let r), .denied(_, let r), .notInUse(_, let r),
             .inUse(let r, _), .shareWithOwner(let r, _):
            return r
        }
    }

    public var description: String {
        switch self {
        case .emptyRange(let r): "\(r) is empty: a resource covers at least one unit"
        case .alreadyOwned(let r, let holder): "\(r) overlaps a claim of \(holder)"
        case .reservedForBackEnd(let r): "\(r) overlaps a reservation of the back-end"
        case .noSuchClaim(let r): "no claim is exactly \(r)"
        case .notOwner(let d, let r): "\(d) does not own \(r)"
        case .revocationPending(let r): "\(r) is being revoked"
        case .denied(let d, let r): "\(d) may not use \(r)"
        case .notInUse(let d, let r): "\(d) has no use of \(r) to end"
        case .inUse(let r, let users): "\(r) is in use by \(Self.describe(users))"
        case .shareWithOwner(let r, let owner): "\(owner) owns \(r): it cannot be shared with its owner"
        }
    }

    /// `guest2×1, guest3×2`, by domain.
    static func describe(_ users: [DomainID: Int], separator: String = ", ") -> String {
        users.sorted { $0.key < $1.key }.map { "\($0.key)×\($0.value)" }.joined(separator: separator)
    }
}

/// What a revocation does to a claim still in use.
public enum RevocationMode: Hashable, Sendable {
    /// Refuse, changing nothing: the caller tears the mappings down first, or tries later.
    case refuseIfInUse
    /// Mark the claim revocation-pending: no new use from now on, not even by the owner; the
    /// claim goes when its last use ends.
    case deferIfInUse
}

/// What a revocation did.
public enum RevocationOutcome: Hashable, Sendable {
    /// The claim and its shares are gone.
    case revoked
    /// The claim is revocation-pending; these domains still use it (with their counts).
    case deferred(users: [DomainID: Int])
}

/// What ending a use did, so that whoever ends the last use of a claim being revoked learns it
/// is now gone (and can, say, hand the VF to the next guest) without polling the event log.
public enum UseEndOutcome: Hashable, Sendable {
    /// The use ended; the claim stays.
    case ended
    /// The use was the last of a claim with a pending revocation: the claim (this resource)
    /// is gone.
    case revocationCompleted(Resource)
}
