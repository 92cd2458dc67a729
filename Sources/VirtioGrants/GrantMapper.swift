import Synchronization
import VirtioCore

/// The mapping side of a grant table (the back-end): the only way the back-end reaches the
/// granting domain's memory (DESIGN §3).
///
/// `map` reads the entry once (one 64-bit load) and decides on that snapshot: the entry must
/// permit access, name this domain, allow the access (GTF_readonly refuses writes) and name a
/// frame inside the granting domain's region; then it sets GTF_reading or GTF_writing with a
/// compare-and-swap that succeeds only if flags and domid are still what it saw. The in-use
/// bit of a kind is cleared only when the last mapping of that kind is unmapped. A revoke
/// request from the front-end stops new mappings of the reference until the existing ones are
/// gone.
public final class GrantMapper: @unchecked Sendable {
    /// The granter's table in shared memory.
    public let table: UnsafeGrantTable
    /// The granting domain.
    public let granter: DomainID
    /// This (the mapping) domain.
    public let domain: DomainID
    /// The granting domain's shared region, frame 0 first.
    public let frames: HostRange
    /// The most mappings that may exist at once.
    public let maxMappings: Int
    /// Frames this side mapped read-only (a file the granter sealed against writes,
    /// Spec/hostile-peers.md GHT-HBE-03): a write mapping of one is refused like a read-only grant.
    public let readOnlyFrames: [Range<Int>]

    /// How many times one reference may be mapped per kind at once (Xen's pin counts stop at 127).
    public static let maxMappingsPerReference = 0x7FFF

    struct Slot {
        var reference: UInt32
        var access: MemoryAccess
        var generation: UInt32
        var live: Bool
    }

    struct State {
        /// Mapping counts of the mapped references only (GHT-LIM-21: nothing per table entry).
        let pins = GrantPinCounts()
        var slots: [Slot] = []
        var freeSlots: [UInt32] = []
        var revoking: Set<UInt32> = []
        var completedRevocations: [GrantReference] = []
        var statistics = GrantMapperStatistics()
    }
    private let state: Locked<State>
    /// Bumped by every revoke request; translators compare it at quiescent points.
    let revocationEpoch = Atomic<UInt64>(0)

    /// What keeps the table's and the frames' memory alive: mappings (and the pinned ranges
    /// of an IOTLB) reach it through the mapper, so they must not outlive it.
    private let memoryOwners: [AnyObject]

    /// A mapper of `granter`'s grants (table in `table`, memory in `frames`) for `domain`.
    ///
    /// - Parameter owners: the objects that own the memory of `table` and `frames`; the mapper
    ///   keeps them alive as long as any mapping may reach that memory.
    public init(table: HostRange, granter: DomainID, frames: HostRange, domain: DomainID, maxMappings: Int = 1 << 16,
                owners: [AnyObject] = [], readOnlyFrames: [Range<Int>] = []) {
        memoryOwners = owners
        self.readOnlyFrames = readOnlyFrames
        self.table = UnsafeGrantTable(table)
        self.granter = granter
        self.domain = domain
        self.frames = frames
        self.maxMappings = maxMappings
        state = Locked(State())
    }

    /// The number of frames in the granting domain's region.
    public var frameCount: Int { frames.count / GrantHandle.pageSize }

    /// Maps the page granted by `ref` for `access`.
    public func map(_ ref: GrantReference, access: MemoryAccess) throws(GrantFault) -> GrantMapping {
        guard Int(ref.rawValue) < table.count else { throw .badReference(ref) }
        let inUseBit: GrantFlags = access == .write ? .writing : .reading
        return try state.withLock { (s) throws(GrantFault) -> GrantMapping in
            guard !s.revoking.contains(ref.rawValue) else { throw .revoked(ref) }
            // One probe: the counts' position stays valid until the insertion below.
            let position = s.pins.position(of: ref.rawValue)
            let pins = s.pins.counts(at: position)
            let count = access == .write ? pins.writers : pins.readers
            guard Int(count) < Self.maxMappingsPerReference else { throw .tooManyMappings(ref) }
            guard s.freeSlots.count > 0 || s.slots.count < maxMappings else { throw .tooManyMappings(ref) }
            // Decide on one snapshot; the compare-and-swap then proves flags and domid did not
            // change between the check and the in-use bit (a retry re-reads and re-checks all).
            var snapshot = table.load(ref)
            var attempts = 0
            while true {
                try check(snapshot, ref, access)
                if snapshot.flags.contains(inUseBit) && count > 0 { break }   // already marked by our own mapping
                var marked = snapshot
                marked.flags.insert(inUseBit)
                let r = table.compareExchangeHeader(ref, expected: snapshot, desired: marked)
                if r.exchanged { break }
                attempts += 1
                guard attempts < 64 else { throw .contended(ref) }
                snapshot = table.load(ref)
            }
            s.pins.add(ref.rawValue, at: position, write: access == .write)
            let slot: UInt32
            if let free = s.freeSlots.popLast() {
                slot = free
                s.slots[Int(slot)].reference = ref.rawValue
                s.slots[Int(slot)].access = access
                s.slots[Int(slot)].generation &+= 1
                s.slots[Int(slot)].live = true
            } else {
                slot = UInt32(s.slots.count)
                s.slots.append(Slot(reference: ref.rawValue, access: access, generation: 1, live: true))
            }
            s.statistics.maps += 1
            let page = frames.slice(offset: Int(snapshot.frame) * GrantHandle.pageSize, length: GrantHandle.pageSize)
            return GrantMapping(reference: ref, access: access, slot: slot, generation: s.slots[Int(slot)].generation,
                                pageAddress: page.startAddress)
        }
    }

    /// The checks of `map`, all on one snapshot of the entry.
    private func check(_ e: GrantEntry, _ ref: GrantReference, _ access: MemoryAccess) throws(GrantFault) {
        let type = e.flags.intersection(.typeMask)
        guard type == .permitAccess else {
            if type.isEmpty { throw .notGranted(ref) }
            throw .unsupported(ref, flags: e.flags.rawValue)
        }
        guard !e.flags.contains(.subPage) else { throw .unsupported(ref, flags: e.flags.rawValue) }
        guard e.domain == domain else { throw .wrongDomain(ref, grantee: e.domain) }
        if access == .write && e.flags.contains(.readOnly) { throw .readOnly(ref) }
        guard Int(e.frame) < frameCount else { throw .frameOutOfRange(ref, frame: e.frame) }
        if access == .write && readOnlyFrames.contains(where: { $0.contains(Int(e.frame)) }) { throw .readOnly(ref) }
    }

    /// Ends `mapping`. The in-use bit of its kind is cleared when it was the last mapping of that
    /// kind. Unmapping a mapping that is already gone is refused (``GrantFault/notMapped(_:)``):
    /// counts never underflow and never drop for another mapping's sake.
    public func unmap(_ mapping: GrantMapping) throws(GrantFault) {
        let ref = mapping.reference
        try state.withLock { (s) throws(GrantFault) in
            let i = Int(mapping.slot)
            guard i < s.slots.count, s.slots[i].live, s.slots[i].generation == mapping.generation,
                  s.slots[i].reference == ref.rawValue, s.slots[i].access == mapping.access else { throw .notMapped(ref) }
            s.slots[i].live = false
            s.freeSlots.append(mapping.slot)
            let left = s.pins.remove(at: s.pins.position(of: ref.rawValue), write: mapping.access == .write)
            if (mapping.access == .write ? left.writers : left.readers) == 0 {
                clearInUse(ref, mapping.access == .write ? .writing : .reading)
            }
            s.statistics.unmaps += 1
            if left == (0, 0) && s.revoking.remove(ref.rawValue) != nil {
                s.completedRevocations.append(ref)
            }
        }
    }

    /// Clears an in-use bit with a compare-and-swap loop (the granter must not change a mapped
    /// entry, but a hostile one may; the loop gives up after a bound rather than spin).
    private func clearInUse(_ ref: GrantReference, _ bit: GrantFlags) {
        var current = table.load(ref)
        for _ in 0..<64 {
            guard current.flags.contains(bit) else { return }
            var cleared = current
            cleared.flags.remove(bit)
            let r = table.compareExchangeHeader(ref, expected: current, desired: cleared)
            if r.exchanged { return }
            current = r.found
        }
    }

    /// Maps every request independently: each element gets its own result, and a failed element
    /// never hides behind a succeeded one (XSA-361).
    public func map(batch: [GrantMapRequest]) -> [Result<GrantMapping, GrantFault>] {
        batch.map { request in Result { () throws(GrantFault) in try map(request.reference, access: request.access) } }
    }

    /// Unmaps every mapping independently, with a result per element.
    public func unmap(batch: [GrantMapping]) -> [Result<Void, GrantFault>] {
        batch.map { mapping in Result { () throws(GrantFault) in try unmap(mapping) } }
    }

    /// How many mappings of `ref` exist, per kind.
    public func mappingCount(_ ref: GrantReference) -> (readers: Int, writers: Int) {
        guard Int(ref.rawValue) < table.count else { return (0, 0) }
        let pins = state.withLock { $0.pins.counts(ref.rawValue) }
        return (Int(pins.readers), Int(pins.writers))
    }

    /// How many references are mapped at all, and the slots the mapper's counts take for
    /// them: both grow with the mappings made, never with the table's size (GHT-LIM-21).
    public var mappedReferences: (count: Int, capacity: Int) { state.withLock { ($0.pins.count, $0.pins.capacity) } }

    /// Counters since creation.
    public var statistics: GrantMapperStatistics { state.withLock { $0.statistics } }

    // MARK: Revocation

    /// The front-end asks for `ref` back. No new mapping of it is made from now on; existing
    /// mappings go when their holders unmap them (translators drop theirs at their next
    /// quiescent point, ``GrantTranslator/quiesce()``). When the last is gone, `ref` appears in
    /// ``takeCompletedRevocations()`` and the front-end's end of access succeeds.
    public func requestRevoke(_ ref: GrantReference) {
        guard Int(ref.rawValue) < table.count else { return }
        state.withLock { s in
            if s.pins.counts(ref.rawValue) == (0, 0) {
                s.completedRevocations.append(ref)
            } else {
                s.revoking.insert(ref.rawValue)
            }
            s.statistics.revocations += 1
        }
        revocationEpoch.add(1, ordering: .releasing)
    }

    /// The front-end asks for every reference of `refs` back (REVOKE_GRANTS), with no
    /// allocation per reference and work bounded by the smaller of the range and the mapped
    /// references (GHT-LIM-22): only mapped ones wait (``isRevoking(anyIn:)``); the others are
    /// revoked at once and not listed in ``takeCompletedRevocations()``.
    public func requestRevoke(_ refs: Range<UInt32>) {
        let refs = refs.clamped(to: 0..<UInt32(clamping: table.count))
        guard !refs.isEmpty else { return }
        state.withLock { s in
            func revoke(_ r: UInt32) { if s.pins.counts(r) != (0, 0) { s.revoking.insert(r) } }
            if refs.count <= s.pins.capacity {
                for r in refs { revoke(r) }
            } else {
                var mapped: [UInt32] = []
                s.pins.forEachReference { r in if refs.contains(r) { mapped.append(r) } }
                for r in mapped { s.revoking.insert(r) }
            }
            s.statistics.revocations += refs.count
        }
        revocationEpoch.add(1, ordering: .releasing)
    }

    /// Whether `ref` is waiting for its mappings to go.
    public func isRevoking(_ ref: GrantReference) -> Bool { state.withLock { $0.revoking.contains(ref.rawValue) } }

    /// Whether any reference of `refs` is waiting for its mappings to go (work bounded by the
    /// smaller of the range and the references waiting).
    public func isRevoking(anyIn refs: Range<UInt32>) -> Bool {
        state.withLock { s in
            refs.count <= s.revoking.count ? refs.contains { s.revoking.contains($0) } : s.revoking.contains { refs.contains($0) }
        }
    }

    /// The references whose revocation completed since the last call.
    public func takeCompletedRevocations() -> [GrantReference] {
        state.withLock { s in
            defer { s.completedRevocations.removeAll() }
            return s.completedRevocations
        }
    }

    /// The revoking set, for translators dropping cached mappings.
    func revokingReferences() -> Set<UInt32> { state.withLock { $0.revoking } }
}

/// Counters of a ``GrantMapper``.
public struct GrantMapperStatistics: Hashable, Sendable {
    public var maps = 0
    public var unmaps = 0
    public var copies = 0
    public var revocations = 0
}
