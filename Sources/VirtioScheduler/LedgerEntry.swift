/// One claim as the ledger shows it in a dump (GHT-LED-08): enough to answer, for any resource,
/// who owns it, who else may use it, who maps it now and whether it is on its way out.
public struct LedgerEntry: Hashable, Sendable, CustomStringConvertible {
    /// The claimed range.
    public let resource: Resource
    /// The one domain that holds it (GHT-LED-01).
    public let owner: DomainID
    /// Whether it is a reservation of the back-end, which no guest may claim (GHT-LED-04).
    public let reserved: Bool
    /// The domains the owner shared it with, in order.
    public let sharedWith: [DomainID]
    /// The domains that use (map) part or all of it now, with their use counts.
    public let users: [DomainID: Int]
    /// Whether a revocation waits for the last use to end.
    public let revocationPending: Bool

    public var description: String {
        var text = "\(resource) owner=\(owner)"
        if reserved { text += " reserved" }
        if !sharedWith.isEmpty { text += " shared=" + sharedWith.map(\.description).joined(separator: ",") }
        if !users.isEmpty { text += " users=" + LedgerError.describe(users, separator: ",") }
        if revocationPending { text += " revocation-pending" }
        return text
    }
}

/// The ledger operations a refusal can come from.
public enum LedgerOperation: String, Hashable, Sendable {
    case claim, reserve, share, unshare, authorize, beginUse, endUse, revoke
}

/// Something the ledger reports: a refusal, a revocation (at once, deferred, or completed), a
/// domain that went away. Kept in a bounded log so that a refused or deferred revocation is
/// never silent (GHT-LED-05).
public struct LedgerEvent: Hashable, Sendable, CustomStringConvertible {
    /// Increases by one per event over the ledger's life: the time order, and a gap in it
    /// after the log overflowed shows how many events were lost.
    public let sequence: UInt64
    public let kind: Kind

    public enum Kind: Hashable, Sendable {
        /// `operation` asked by `by` was refused.
        case refused(LedgerOperation, by: DomainID, LedgerError)
        /// A claim not in use was revoked at once (by revoke or because its owner went away).
        case revoked(Resource, owner: DomainID)
        /// A claim in use was marked revocation-pending; these domains still use it.
        case revocationDeferred(Resource, owner: DomainID, users: [DomainID: Int])
        /// The last use of a revocation-pending claim ended: the claim is gone.
        case revocationCompleted(Resource, owner: DomainID)
        /// The domain went away; the events that follow show what it released.
        case released(DomainID)
    }

    public var description: String {
        switch kind {
        case .refused(let op, let d, let error): "#\(sequence) refused \(op.rawValue) by \(d): \(error)"
        case .revoked(let r, let owner): "#\(sequence) revoked \(r) from \(owner)"
        case .revocationDeferred(let r, let owner, let users):
            "#\(sequence) deferred revocation of \(r) from \(owner): in use by \(LedgerError.describe(users))"
        case .revocationCompleted(let r, let owner): "#\(sequence) completed revocation of \(r) from \(owner)"
        case .released(let d): "#\(sequence) released \(d)"
        }
    }
}

/// What ``ResourceLedger/release(domain:)`` did for a domain that went away (GHT-LED-07).
public struct ReleaseReport: Hashable, Sendable {
    /// The domain that went away.
    public let domain: DomainID
    /// The uses it held, by the exact resource it began them on, with counts: all ended.
    public internal(set) var usesEnded: [Resource: Int] = [:]
    /// Pending revocations (of any owner's claims) that its ended uses completed.
    public internal(set) var completedRevocations: [Resource] = []
    /// Other owners' claims that named it in a share: the share is gone.
    public internal(set) var sharesRemoved: [Resource] = []
    /// Its own claims that nobody used: gone now.
    public internal(set) var revoked: [Resource] = []
    /// Its own claims other domains still use: revocation-pending, with their users.
    public internal(set) var deferred: [Resource: [DomainID: Int]] = [:]

    /// Whether the domain held nothing the ledger knew of.
    public var isEmpty: Bool {
        usesEnded.isEmpty && completedRevocations.isEmpty && sharesRemoved.isEmpty && revoked.isEmpty && deferred.isEmpty
    }

    init(domain: DomainID) { self.domain = domain }
}
