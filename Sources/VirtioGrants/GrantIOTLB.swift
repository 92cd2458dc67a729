import Synchronization
import VirtioCore

/// One cached translation: a grant reference and the mappings held for it.
@frozen @usableFromInline
struct IOTLBEntry {
    /// `reference + 1`; 0 marks an empty entry.
    @usableFromInline var tag: UInt32
    /// Bit 0: a read mapping is held; bit 1: a write mapping is held.
    @usableFromInline var permissions: UInt32
    @usableFromInline var readSlot: UInt32
    @usableFromInline var readGeneration: UInt32
    @usableFromInline var writeSlot: UInt32
    @usableFromInline var writeGeneration: UInt32
    /// The page's host address.
    @usableFromInline var page: UInt

    @usableFromInline static var empty: IOTLBEntry {
        IOTLBEntry(tag: 0, permissions: 0, readSlot: 0, readGeneration: 0, writeSlot: 0, writeGeneration: 0, page: 0)
    }
}

/// Counters of one IOTLB (one queue).
public struct IOTLBStatistics: Hashable, Sendable {
    public var hits: UInt64 = 0
    public var misses: UInt64 = 0
    public var evictions: UInt64 = 0
    public var invalidations: UInt64 = 0
    /// Evicted mappings parked until the queue's next quiescent point (GHT-DMA-01), since creation.
    public var parked: UInt64 = 0
    /// Faults by kind (``TranslationFault/Kind``).
    public var faults: [TranslationFault.Kind: UInt64] = [:]

    /// Translations served from the cache, as a fraction of all that succeeded.
    public var hitRate: Double { hits + misses == 0 ? 0 : Double(hits) / Double(hits + misses) }
    /// All faults.
    public var faultCount: UInt64 { faults.values.reduce(0, +) }
}

/// A per-queue IOTLB in front of a ``GrantMapper``: a fixed-size, direct-mapped cache of grant
/// mappings (persistent grants), looked up in O(1) with no allocation and no lock on a hit.
///
/// Entries hold real mappings, so while a page is cached its grant stays marked in use and the
/// front-end cannot end access to it. Entries are dropped on ``invalidate(_:)`` and
/// ``invalidateAll()`` (queue reset), and at ``quiesce()`` for references the front-end asked
/// back.
///
/// In use for the whole DMA (`hostile-peers.md` §2, the XSA-218/230 class): an entry evicted
/// by a conflicting miss may belong to a chain still in flight (an earlier descriptor of the
/// same batch, or the first page of the very translation that crosses into a conflicting
/// one), so eviction never unmaps. The evicted mappings are parked on a bounded list and
/// released at the next ``quiesce()``, which the queue calls only when none of its chains is
/// in flight (GHT-DMA-01). ``GrantTranslator/wantsQuiescentPoint`` tells the queue to end its
/// batch early once half the list is used (GHT-DMA-03); a miss that finds the list full is
/// refused with ``GrantFault/inFlightLimit(_:)`` rather than unmap under a chain (GHT-DMA-04).
///
/// One IOTLB belongs to one queue worker: its methods are not thread-safe.
public final class GrantIOTLB: @unchecked Sendable {
    /// The mapper this cache fronts.
    public let mapper: GrantMapper
    /// The number of entries (a power of 2).
    public let capacity: Int
    /// 32 - log2(capacity): the slot of a reference is the top bits of its multiplicative hash.
    @usableFromInline let shift: UInt32
    @usableFromInline let entries: UnsafeMutablePointer<IOTLBEntry>
    /// 0: hits, 1: misses, 2: evictions, 3: invalidations, 4: parked since creation,
    /// 5: parked now, 6...: faults by kind.
    @usableFromInline let counters: UnsafeMutablePointer<UInt64>
    static let faultBase = 6
    @usableFromInline static let parkedNow = 5
    /// Evicted entries whose mappings a chain in flight may still use (GHT-DMA-01).
    private let parkedEntries: UnsafeMutablePointer<IOTLBEntry>
    /// The most evicted entries that may wait for the quiescent point (GHT-DMA-04); each holds
    /// up to two mappings.
    public let parkingCapacity: Int
    /// Parked entries from which the queue should end its batch early (half the list).
    @usableFromInline let parkingHighWater: UInt64
    private var epochSeen: UInt64 = 0

    /// An IOTLB of `capacity` entries (rounded up to a power of 2) in front of `mapper`, whose
    /// evicted entries wait for the next quiescent point on a list of `parkingCapacity`
    /// (at least 2; by default as many as the cache has entries).
    public init(mapper: GrantMapper, capacity: Int = 1024, parkingCapacity: Int? = nil) {
        var size = 1
        while size < max(capacity, 1) { size <<= 1 }
        self.mapper = mapper
        self.capacity = size
        shift = UInt32(32 - size.trailingZeroBitCount)
        entries = .allocate(capacity: size)
        entries.initialize(repeating: .empty, count: size)
        counters = .allocate(capacity: Self.faultBase + 16)
        counters.initialize(repeating: 0, count: Self.faultBase + 16)
        self.parkingCapacity = max(parkingCapacity ?? size, 2)
        parkingHighWater = UInt64(self.parkingCapacity / 2)
        parkedEntries = .allocate(capacity: self.parkingCapacity)
        epochSeen = mapper.revocationEpoch.load(ordering: .acquiring)
    }

    deinit {
        invalidateAll()
        entries.deallocate()
        counters.deallocate()
        parkedEntries.deallocate()
    }

    /// The entry a reference lives in. Fibonacci hashing spreads the regular strides a front-end
    /// produces (areas granted as runs of consecutive references, a fixed distance apart) over
    /// the whole cache, where a plain mask would make them collide.
    @inlinable
    static func slot(_ reference: UInt64, shift: UInt32) -> Int {
        Int(truncatingIfNeeded: (UInt32(truncatingIfNeeded: reference) &* 0x9E37_79B1) &>> shift)
    }

    /// The entry `ref` is cached in: references with the same slot evict each other.
    public func slot(of ref: GrantReference) -> Int { Self.slot(UInt64(ref.rawValue), shift: shift) }

    /// The translator for the ring code: a small value holding this cache's pointers. The
    /// IOTLB must outlive every copy.
    public var translator: GrantTranslator { GrantTranslator(iotlb: self) }

    /// Drops the cached mappings of `ref`, if any. Like ``invalidateAll()``, only where no
    /// chain of the queue is in flight.
    public func invalidate(_ ref: GrantReference) {
        let i = Self.slot(UInt64(ref.rawValue), shift: shift)
        if entries[i].tag == ref.rawValue &+ 1 { drop(i) }
    }

    /// Drops every cached and parked mapping (queue reset, QRST-DEV-02; teardown): only where
    /// no chain of the queue is in flight (the queue is stopped).
    public func invalidateAll() {
        releaseParked()
        for i in 0..<capacity where entries[i].tag != 0 { drop(i) }
    }

    /// A point where no chain of this queue is in flight (the queue calls it after every
    /// batch, completed or abandoned): releases the mappings evicted since the last call
    /// (GHT-DMA-01), and drops the mappings of references the front-end asked back since
    /// then, so their revocation can complete (GHT-TLB-01).
    public func quiesce() {
        releaseParked()
        let epoch = mapper.revocationEpoch.load(ordering: .acquiring)
        guard epoch != epochSeen else { return }
        epochSeen = epoch
        let revoking = mapper.revokingReferences()
        guard !revoking.isEmpty else { return }
        for i in 0..<capacity where entries[i].tag != 0 && revoking.contains(entries[i].tag &- 1) { drop(i) }
    }

    /// Whether the queue should end its batch at the next chain boundary: half the parking
    /// list is used (GHT-DMA-03). The queue asks between chains; a quiescent point empties it.
    public var wantsQuiescentPoint: Bool { translator.wantsQuiescentPoint }

    /// Evicted entries waiting for the next quiescent point.
    public var parkedCount: Int { Int(counters[Self.parkedNow]) }

    /// Counters since creation.
    public var statistics: IOTLBStatistics {
        var s = IOTLBStatistics(hits: counters[0], misses: counters[1], evictions: counters[2], invalidations: counters[3],
                                parked: counters[4])
        for raw in 0..<16 where counters[Self.faultBase + raw] != 0 {
            if let kind = TranslationFault.Kind(rawValue: UInt8(raw)) { s.faults[kind] = counters[Self.faultBase + raw] }
        }
        return s
    }

    /// Whether `ref` is cached (for tests and diagnostics).
    public func contains(_ ref: GrantReference) -> Bool {
        entries[Self.slot(UInt64(ref.rawValue), shift: shift)].tag == ref.rawValue &+ 1
    }

    private func drop(_ i: Int) {
        let e = entries[i]
        entries[i] = .empty
        counters[3] += 1
        unmapHeld(e)
    }

    /// Parks an evicted entry until the next quiescent point; refuses when the list is full
    /// (GHT-DMA-04): the mapping stays, the translation that needed the slot fails.
    private func park(_ e: IOTLBEntry) throws(GrantFault) {
        let n = Int(counters[Self.parkedNow])
        guard n < parkingCapacity else { throw .inFlightLimit(GrantReference(e.tag &- 1)) }
        parkedEntries[n] = e
        counters[Self.parkedNow] = UInt64(n + 1)
        counters[4] += 1
    }

    /// Unmaps every parked entry: only at a quiescent point.
    private func releaseParked() {
        let n = Int(counters[Self.parkedNow])
        guard n > 0 else { return }
        counters[Self.parkedNow] = 0
        for k in 0..<n { unmapHeld(parkedEntries[k]) }
    }

    private func unmapHeld(_ e: IOTLBEntry) {
        let ref = GrantReference(e.tag &- 1)
        if e.permissions & 1 != 0 {
            try? mapper.unmap(GrantMapping(reference: ref, access: .read, slot: e.readSlot, generation: e.readGeneration, pageAddress: e.page))
        }
        if e.permissions & 2 != 0 {
            try? mapper.unmap(GrantMapping(reference: ref, access: .write, slot: e.writeSlot, generation: e.writeGeneration, pageAddress: e.page))
        }
    }

    /// The miss path: maps `ref` for `access` (adding to a cached entry of the same reference,
    /// or replacing another reference's entry, which is parked, never unmapped: GHT-DMA-01)
    /// and returns the page's host address.
    @usableFromInline
    func fill(_ ref: GrantReference, access: MemoryAccess) throws(GrantFault) -> UInt {
        let i = Self.slot(UInt64(ref.rawValue), shift: shift)
        var e = entries[i]
        if e.tag != ref.rawValue &+ 1 {
            if e.tag != 0 {
                try park(e)
                entries[i] = .empty
                counters[2] += 1
            }
            e = .empty
        }
        let mapping = try mapper.map(ref, access: access)
        counters[1] += 1
        if e.tag != 0 && e.page != mapping.pageAddress {
            // The granter re-pointed the reference: keep the new mapping only; the old page may
            // be in use by a chain in flight, so its mappings are parked too.
            do {
                try park(e)
            } catch {
                try? mapper.unmap(mapping)
                throw error
            }
            entries[i] = .empty
            e = .empty
        }
        e.tag = ref.rawValue &+ 1
        e.page = mapping.pageAddress
        if access == .write {
            e.permissions |= 2
            e.writeSlot = mapping.slot
            e.writeGeneration = mapping.generation
        } else {
            e.permissions |= 1
            e.readSlot = mapping.slot
            e.readGeneration = mapping.generation
        }
        entries[i] = e
        return mapping.pageAddress
    }

    /// Counts a fault of `kind`.
    @usableFromInline
    func countFault(_ kind: TranslationFault.Kind) {
        counters[Self.faultBase + Int(kind.rawValue)] += 1
    }
}
