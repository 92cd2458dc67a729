/// How a driver places a chain in the ring.
public enum ChainLayout: Sendable {
    /// Indirect when INDIRECT_DESC is negotiated, the chain has more than one segment and a
    /// table is free; direct otherwise.
    case automatic
    /// Always in the descriptor table.
    case direct
    /// Always through an indirect table (fails if INDIRECT_DESC or a table is unavailable).
    case indirect
}

/// A completed chain handed back to the driver: the caller's token and the bytes the device
/// wrote into its device-writable part.
@frozen
public struct UsedBuffer: Hashable, Sendable {
    public var token: UInt64
    public var writtenLength: UInt32

    @inlinable
    public init(token: UInt64, writtenLength: UInt32) {
        self.token = token
        self.writtenLength = writtenLength
    }
}

/// The driver's private record of an exposed chain, indexed by its head descriptor: the
/// caller's token and one packed word (two stores to write, two loads to check, one array
/// base to load).
@frozen @usableFromInline
struct ChainRecord {
    @usableFromInline var token: UInt64
    /// Bits 0–31: writable capacity, clamped to `UInt32.max` (a used length cannot say more);
    /// bits 32–47: descriptors the chain holds in the table, 0 when the head is not
    /// outstanding; bits 48–63: the indirect table it uses plus one, 0 for none. A free head's
    /// word is 0, and a one-descriptor direct chain's upper half is 1.
    @usableFromInline var packed: UInt64

    @inlinable
    init(token: UInt64, packed: UInt64) {
        self.token = token
        self.packed = packed
    }

    @inlinable
    init(token: UInt64, capacity: UInt32, descriptorCount: UInt16, table: UInt16) {
        self.token = token
        packed = UInt64(capacity) | UInt64(descriptorCount) &<< 32 | UInt64(table &+ 1) &<< 48
    }

    @inlinable var capacity: UInt32 { UInt32(truncatingIfNeeded: packed) }
    @inlinable var descriptorCount: UInt16 { UInt16(truncatingIfNeeded: packed &>> 32) }
    /// The indirect table, or `noTable`.
    @inlinable var table: UInt16 { UInt16(truncatingIfNeeded: packed &>> 48) &- 1 }
    /// Whether the head is outstanding: an outstanding chain holds at least one descriptor, and
    /// a free head's word is 0, so the upper half alone tells.
    @inlinable var isOutstanding: Bool { packed &>> 32 != 0 }
    /// Whether the chain is one descriptor in the table (no indirect table).
    @inlinable var isSingleDirect: Bool { packed &>> 32 == 1 }

    /// The packed word of a head that is not outstanding.
    @inlinable static var freeWord: UInt64 { 0 }
}

/// The driver (front-end) side of a split virtqueue (VIRTIO 1.2 §2.7).
///
/// The driver keeps a private record of each chain it exposes (token, descriptor count,
/// writable capacity, links), so it never trusts the shared descriptor table when taking a
/// chain back, and it checks every used element the device writes: an id that is not an
/// outstanding head, a length beyond the chain's writable capacity or a used index that
/// runs ahead of what was exposed breaks the queue (Spec/transport.md §5). A broken queue
/// hands the caller nothing it did not post.
///
/// Free descriptors are recycled first-in first-out: a descriptor the device just returned
/// is the last to be reused. Besides spreading wear over the table (a stale device access
/// hits an idle slot, not the newest request), this keeps consecutive requests independent,
/// so a lock-step driver and device overlap instead of serializing on the free list.
public struct SplitDriverQueue: @unchecked Sendable {
    public let layout: SplitRingLayout
    public let ring: SplitRing
    public let features: VirtioFeatures
    @usableFromInline var indirectTables: IndirectTablePool?

    @usableFromInline let mask: Int
    @usableFromInline let eventIndexEnabled: Bool
    @usableFromInline let storage: UnsafeAllocation
    @usableFromInline let records: UnsafeMutablePointer<ChainRecord>
    /// `links[i]`: the descriptor after `i` in its chain (driver-private, never read back from
    /// shared memory).
    @usableFromInline let links: UnsafeMutablePointer<UInt16>
    /// The free descriptors, a ring: taken at `freeTake`, returned at `freeEnd`.
    @usableFromInline let freeRing: UnsafeMutablePointer<UInt16>

    @usableFromInline var freeTake: Int = 0
    /// Where the next returned descriptor goes, plus N: `freeEnd - freeTake` is the free count
    /// (one subtraction to check room), and since N is a multiple of the ring size,
    /// `freeEnd & mask` is still the slot.
    @usableFromInline var freeEnd: Int
    /// The available index in its low 16 bits (the upper bits count wraps and mean nothing),
    /// kept in 32 bits: the compiler widens some loads of it to 32 bits, and a 16-bit store
    /// cannot be forwarded to a wider load (the load would wait for the store to reach the
    /// cache, on every chain).
    @usableFromInline var availIndexWord: UInt32 = 0
    @inlinable var availIndex: UInt16 {
        @inline(__always) get { UInt16(truncatingIfNeeded: availIndexWord) }
        @inline(__always) set { availIndexWord = UInt32(newValue) }
    }
    @usableFromInline var kickedAvail: UInt16 = 0
    /// The position in the used ring and `used.idx` as last read; the limit is N, or 0 once
    /// the queue is broken.
    @usableFromInline var usedCursor: RingCursor
    /// The next used-ring position to take back.
    @inlinable
    var lastUsed: UInt16 { usedCursor.next }
    @usableFromInline var callbacksEnabled = true
    /// EVENT_IDX negotiated and used-buffer notifications wanted: `used_event` follows each reap.
    /// Kept as a flag of the used cursor, which every reap reads anyway.
    @inlinable
    var tracksUsedEvent: Bool {
        get { usedCursor.flags & Self.tracksUsedEventFlag != 0 }
        set { usedCursor = usedCursor.flagged(newValue ? Self.tracksUsedEventFlag : 0) }
    }
    @inlinable static var tracksUsedEventFlag: UInt16 { 1 }
    @usableFromInline var broken = false
    /// The most segments an add may place, plus one: N, or 0 once broken (see `add`).
    @usableFromInline var addLimit: Int
    @usableFromInline var brokenBy: DriverQueueError?

    @usableFromInline static var noTable: UInt16 { .max }

    /// Sets up the driver side over `ring`, zeroing it first (ANS-DRV-01, QRST-DRV-02).
    ///
    /// - Parameters:
    ///   - features: the negotiated features (INDIRECT_DESC and EVENT_IDX matter here).
    ///   - indirectTables: tables for indirect chains; used only with INDIRECT_DESC.
    public init(ring: SplitRing, features: VirtioFeatures, indirectTables: IndirectTablePool? = nil) {
        let n = ring.layout.count
        var plan = AllocationPlan()
        let o1 = plan.reserve(ChainRecord.self, count: n)
        let o2 = plan.reserve(UInt16.self, count: n)
        let o3 = plan.reserve(UInt16.self, count: n)
        storage = UnsafeAllocation(plan)
        records = storage.carve(ChainRecord.self, at: o1, count: n)
        links = storage.carve(UInt16.self, at: o2, count: n)
        freeRing = storage.carve(UInt16.self, at: o3, count: n)
        layout = ring.layout
        self.ring = ring
        self.features = features
        self.indirectTables = features.contains(.indirectDescriptors) ? indirectTables : nil
        mask = n - 1
        eventIndexEnabled = features.contains(.eventIndex)
        freeEnd = n
        addLimit = n
        usedCursor = RingCursor(position: 0, limit: ring.layout.queueSize)
            .flagged(features.contains(.eventIndex) ? Self.tracksUsedEventFlag : 0)
        for i in 0..<n {
            freeRing[i] = UInt16(truncatingIfNeeded: i)
            records[i] = ChainRecord(token: 0, packed: ChainRecord.freeWord)
        }
        ring.zero()
    }

    /// Free descriptors in the table.
    @inlinable
    public var freeDescriptorCount: Int { freeEnd &- freeTake }
    /// Chains exposed to the device and not yet used.
    @inlinable
    public var outstandingCount: Int { Int(availIndex &- lastUsed) }
    /// Whether the device's behaviour broke the queue.
    public var isBroken: Bool { broken }
    /// The violation of the device that broke the queue, if any.
    public var failure: DriverQueueError? { brokenBy }
    /// The available index the driver has written (published or not).
    public var nextAvailIndex: UInt16 { availIndex }

    @inlinable
    mutating func fail(_ error: DriverQueueError) -> DriverQueueError {
        if !broken {
            broken = true
            brokenBy = error
            addLimit = 0            // every later add goes through the check that rethrows
            usedCursor = usedCursor.closed()   // every later reap goes through the check that rethrows
        }
        return brokenBy ?? error
    }

    /// The record of the chain whose head is `head` (free if the head is not outstanding).
    @inlinable @inline(__always)
    func record(_ head: Int) -> ChainRecord { records[head] }

    @inlinable @inline(__always)
    func setRecord(_ record: ChainRecord, _ head: Int) {
        records[head] = record
    }

    /// Takes the next free descriptor (the caller checked there is one).
    @inlinable @inline(__always)
    mutating func takeDescriptor() -> UInt16 {
        let index = freeRing[freeTake & mask]
        freeTake &+= 1
        return index
    }

    /// Returns a descriptor to the free ring (`mask` is N - 1, whichever copy the caller has
    /// at hand).
    @inlinable @inline(__always)
    mutating func giveDescriptor(_ index: UInt16, mask: Int) {
        freeRing[freeEnd & mask] = index
        freeEnd &+= 1
    }
}
