import Synchronization
import VirtioCore

/// The granting side of a grant table (the front-end): Xen `grant_entry_v1` entries in
/// shared memory, allocated, published and ended race-free.
///
/// `endAccess` succeeds only when the peer holds no mapping: it clears the entry with a
/// compare-and-swap of flags and domid, so a concurrent map either wins first (and end reports
/// busy) or fails after. A reference is freed only by a successful end, so it is never reused
/// while a mapping of it may exist. Busy grants can be parked on a bounded deferred list and
/// retried. Per-peer quotas bound what each peer can hold; exhaustion is a typed error.
public final class GrantTable: @unchecked Sendable {
    /// The entries in shared memory.
    public let entries: UnsafeGrantTable
    /// The granting domain.
    public let domain: DomainID
    /// The number of 4 KiB frames in the granting domain's shared region.
    public let frameCount: Int
    /// The most references that may wait on the deferred list.
    public let deferredCapacity: Int

    struct State {
        var used: [UInt64]                       // bitmap: 1 = allocated (granted or deferred)
        var cursor: Int                          // where the next search starts: recently freed references rest
        var peerOf: [UInt16]                     // per reference: the peer it is granted to
        var granted: [DomainID: Int] = [:]
        var quotas: [DomainID: Int] = [:]
        var deferred: [GrantReference] = []
        var statistics = GrantTableStatistics()
    }
    private let state: Locked<State>

    /// A granting side over `table` (which it zeroes), for a domain whose shared region holds
    /// `frameCount` frames.
    public init(table: HostRange, domain: DomainID, frameCount: Int, deferredCapacity: Int = 1024) {
        entries = UnsafeGrantTable(table)
        self.domain = domain
        self.frameCount = frameCount
        self.deferredCapacity = deferredCapacity
        table.fill(with: 0)
        var used = [UInt64](repeating: 0, count: (entries.count + 63) / 64)
        for r in 0..<min(GrantReference.reservedCount, entries.count) { used[r / 64] |= 1 << UInt64(r % 64) }
        state = Locked(State(used: used, cursor: GrantReference.reservedCount,
                            peerOf: [UInt16](repeating: 0, count: entries.count)))
    }

    /// Limits how many references `peer` may hold at once (granted or deferred).
    public func setQuota(_ limit: Int, for peer: DomainID) {
        state.withLock { $0.quotas[peer] = limit }
    }

    /// Grants `peer` access to `frame` and returns the reference (Xen
    /// `gnttab_grant_foreign_access`): domid and frame are written, then the flags are
    /// published with release ordering.
    public func grant(frame: UInt32, to peer: DomainID, readOnly: Bool) throws(GrantTableError) -> GrantReference {
        try grant(frames: CollectionOfOne(frame), to: peer, readOnly: readOnly)
    }

    /// Grants `peer` access to each of `frames` under consecutive references (a multi-page
    /// buffer is then linear in handle space) and returns the first.
    public func grant(frames: some Collection<UInt32>, to peer: DomainID, readOnly: Bool) throws(GrantTableError) -> GrantReference {
        guard peer != domain else { throw .selfGrant }
        for f in frames where Int(f) >= frameCount { throw .frameOutOfRange(f) }
        let count = frames.count
        guard count > 0 else { throw .tableFull(requested: 0) }
        let first: Int = try state.withLock { (s) throws(GrantTableError) -> Int in
            let held = s.granted[peer, default: 0]
            if let limit = s.quotas[peer], held + count > limit { throw .quotaExceeded(peer: peer, limit: limit) }
            guard let first = Self.findRun(&s, count: count, total: entries.count, isClean: isClean) else { throw .tableFull(requested: count) }
            for r in first..<(first + count) {
                s.used[r / 64] |= 1 << UInt64(r % 64)
                s.peerOf[r] = peer.rawValue
            }
            s.cursor = first + count
            s.granted[peer] = held + count
            s.statistics.granted += count
            return first
        }
        let flags: GrantFlags = readOnly ? [.permitAccess, .readOnly] : .permitAccess
        for (i, frame) in frames.enumerated() {
            entries.store(GrantEntry(flags: flags, domain: peer, frame: frame), at: GrantReference(UInt32(first + i)))
        }
        return GrantReference(UInt32(first))
    }

    /// Whether the shared entry of `r` shows no mapping. A reference free in the bitmap whose
    /// entry still has an in-use bit (a table written by someone else, or a peer that never let
    /// go) may still be mapped, so it is not reused (GHT-GNT-14).
    private func isClean(_ r: Int) -> Bool {
        entries.load(GrantReference(UInt32(r))).flags.isDisjoint(with: .inUse)
    }

    /// Finds `count` consecutive free references, starting the search at the cursor so that
    /// freed references are reused as late as possible.
    private static func findRun(_ s: inout State, count: Int, total: Int, isClean: (Int) -> Bool) -> Int? {
        func isFree(_ r: Int) -> Bool { s.used[r / 64] & (1 << UInt64(r % 64)) == 0 && isClean(r) }
        for pass in 0..<2 {
            var r = pass == 0 ? max(s.cursor, GrantReference.reservedCount) : GrantReference.reservedCount
            let end = pass == 0 ? total : min(s.cursor + count, total)
            var run = 0
            while r < end {
                if s.used[r / 64] == .max { r = (r / 64 + 1) * 64; run = 0; continue }
                if isFree(r) {
                    run += 1
                    if run == count { return r - count + 1 }
                } else {
                    run = 0
                }
                r += 1
            }
        }
        return nil
    }

    /// Ends access to `ref` (Xen `gnttab_end_foreign_access_ref`, v1): reads the entry, and if
    /// the peer holds no mapping clears flags and domid with one compare-and-swap. A map that
    /// races with it either sets its in-use bit first (then this reports ``EndAccessResult/busy``)
    /// or finds the entry cleared.
    public func endAccess(_ ref: GrantReference) throws(GrantTableError) -> EndAccessResult {
        guard isAllocated(ref) else { throw .notGranted(ref) }
        switch tryEnd(ref) {
        case .ended:
            release(ref)
            return .ended
        case .busy, .deferred:
            state.withLock { $0.statistics.busy += 1 }
            return .busy
        }
    }

    /// Ends access to `ref`, or, if the peer still maps it, parks it on the deferred list
    /// (bounded by ``deferredCapacity``) to be retried by ``retryDeferred()``.
    public func endAccessOrDefer(_ ref: GrantReference) throws(GrantTableError) -> EndAccessResult {
        let result = try endAccess(ref)
        guard result == .busy else { return result }
        try state.withLock { (s) throws(GrantTableError) in
            guard !s.deferred.contains(ref) else { return }
            guard s.deferred.count < deferredCapacity else { throw .deferredListFull(ref) }
            s.deferred.append(ref)
            s.statistics.deferred += 1
        }
        return .deferred
    }

    /// Retries every deferred reference; returns those whose access ended (now free).
    public func retryDeferred() -> [GrantReference] {
        let pending = state.withLock { $0.deferred }
        var ended: [GrantReference] = []
        for ref in pending where tryEnd(ref) == .ended {
            release(ref)
            ended.append(ref)
        }
        if !ended.isEmpty { state.withLock { s in s.deferred.removeAll { ended.contains($0) } } }
        return ended
    }

    /// References waiting on the deferred list.
    public var deferredReferences: [GrantReference] { state.withLock { $0.deferred } }

    /// How many references `peer` holds (granted or deferred).
    public func grantCount(for peer: DomainID) -> Int { state.withLock { $0.granted[peer, default: 0] } }

    /// Counters since creation.
    public var statistics: GrantTableStatistics { state.withLock { $0.statistics } }

    /// The entry of `ref` as it is in shared memory now.
    public func entry(_ ref: GrantReference) -> GrantEntry { entries.load(ref) }

    /// Whether `ref` is allocated (granted or waiting to be ended).
    public func isAllocated(_ ref: GrantReference) -> Bool {
        let r = Int(ref.rawValue)
        guard r >= GrantReference.reservedCount, r < entries.count else { return false }
        return state.withLock { $0.used[r / 64] & (1 << UInt64(r % 64)) != 0 }
    }

    private func tryEnd(_ ref: GrantReference) -> EndAccessResult {
        var current = entries.load(ref)
        for _ in 0..<64 {
            if !current.flags.isDisjoint(with: .inUse) { return .busy }
            let r = entries.compareExchangeHeader(ref, expected: current, desired: GrantEntry(flags: [], domain: DomainID(0), frame: current.frame))
            if r.exchanged { return .ended }
            current = r.found
        }
        return .busy
    }

    private func release(_ ref: GrantReference) {
        let r = Int(ref.rawValue)
        state.withLock { s in
            s.used[r / 64] &= ~(1 << UInt64(r % 64))
            let peer = DomainID(s.peerOf[r])
            s.granted[peer, default: 1] -= 1
            s.statistics.ended += 1
        }
    }
}

/// Counters of a ``GrantTable``.
public struct GrantTableStatistics: Hashable, Sendable {
    public var granted = 0
    public var ended = 0
    /// End-of-access attempts that found the grant still mapped.
    public var busy = 0
    /// References that went to the deferred list.
    public var deferred = 0
}
