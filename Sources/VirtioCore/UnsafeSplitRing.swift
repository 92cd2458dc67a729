import Synchronization

// The unsafe core of the split ring: typed views of the three areas in shared memory.
// Every shared field is reached through an atomic bound in place, so each read is a single
// fetch (no compiler re-load of a value the peer may change), ring indices carry
// acquire/release ordering, and the other fields are relaxed. Index arguments are
// bounds-checked here, once, so no caller can reach outside an area.

@inlinable @inline(__always)
func atomic16(_ p: UnsafeMutableRawPointer) -> UnsafeMutablePointer<Atomic<UInt16>> {
    p.assumingMemoryBound(to: Atomic<UInt16>.self)
}

@inlinable @inline(__always)
func atomic32(_ p: UnsafeMutableRawPointer) -> UnsafeMutablePointer<Atomic<UInt32>> {
    p.assumingMemoryBound(to: Atomic<UInt32>.self)
}

@inlinable @inline(__always)
func atomic64(_ p: UnsafeMutableRawPointer) -> UnsafeMutablePointer<Atomic<UInt64>> {
    p.assumingMemoryBound(to: Atomic<UInt64>.self)
}

/// A descriptor table (VIRTIO 1.2 §2.7.5) or an indirect table (§2.7.5.3) in shared memory.
@frozen @usableFromInline
package struct UnsafeDescriptorTable: @unchecked Sendable {
    @usableFromInline
    let base: UnsafeMutableRawPointer
    /// The number of descriptors in the table.
    @usableFromInline package let count: Int
    @usableFromInline
    let aligned: Bool

    /// A view of `range.count / 16` descriptors.
    @inlinable
    package init(_ range: HostRange) {
        base = range.base
        count = range.count &>> 4
        aligned = range.isAligned(to: 8)
    }

    /// Reads descriptor `index` once.
    ///
    /// Aligned tables (the descriptor table always is; indirect tables nearly always) are read
    /// as two relaxed 64-bit atomic loads; an unaligned indirect table is copied bytewise
    /// into a local first. Either way every field comes from one fetch.
    @inlinable
    package func load(_ index: Int) -> Descriptor {
        precondition(UInt(bitPattern: index) < UInt(bitPattern: count), "descriptor index out of table")
        let p = base + (index &<< 4)
        if _fastPath(aligned) {
            return Descriptor(word0: atomic64(p).pointee.load(ordering: .relaxed),
                              word1: atomic64(p + 8).pointee.load(ordering: .relaxed))
        }
        return Descriptor(word0: p.loadUnaligned(as: UInt64.self), word1: (p + 8).loadUnaligned(as: UInt64.self))
    }

    /// Reads descriptor `index` of a table known to be 8-aligned, with `index` already
    /// validated against the table (the main descriptor table, whose alignment was checked
    /// at setup).
    @inlinable
    func loadValidated(_ index: Int) -> Descriptor {
        let p = base + (index &<< 4)
        return Descriptor(word0: atomic64(p).pointee.load(ordering: .relaxed),
                          word1: atomic64(p + 8).pointee.load(ordering: .relaxed))
    }

    /// Writes descriptor `index` of a table known to be 8-aligned, with `index` already
    /// validated against the table.
    @inlinable
    func storeValidated(_ descriptor: Descriptor, at index: Int) {
        let p = base + (index &<< 4)
        atomic64(p).pointee.store(descriptor.address.littleEndian, ordering: .relaxed)
        atomic64(p + 8).pointee.store(descriptor.word1, ordering: .relaxed)
    }

    /// Writes descriptor `index` (driver side).
    @inlinable
    package func store(_ descriptor: Descriptor, at index: Int) {
        precondition(UInt(bitPattern: index) < UInt(bitPattern: count), "descriptor index out of table")
        let p = base + (index &<< 4)
        if _fastPath(aligned) {
            atomic64(p).pointee.store(descriptor.address.littleEndian, ordering: .relaxed)
            atomic64(p + 8).pointee.store(descriptor.word1, ordering: .relaxed)
        } else {
            p.storeBytes(of: descriptor.address.littleEndian, as: UInt64.self)
            (p + 8).storeBytes(of: descriptor.word1, as: UInt64.self)
        }
    }
}

/// The available ring (VIRTIO 1.2 §2.7.6): le16 flags, le16 idx, le16 ring[N], le16 used_event.
@frozen @usableFromInline
package struct UnsafeAvailRing: @unchecked Sendable {
    @usableFromInline
    let base: UnsafeMutableRawPointer
    /// N, the number of ring entries.
    @usableFromInline package let count: Int
    @usableFromInline let mask: Int

    /// A view over `range`, which must hold at least 6 + 2·`count` bytes, 2-aligned.
    @inlinable
    package init(_ range: HostRange, count: Int) {
        precondition(range.count >= 6 + 2 * count && range.isAligned(to: 2))
        base = range.base
        self.count = count
        mask = count &- 1
    }

    /// VIRTQ_AVAIL_F_NO_INTERRUPT.
    @inlinable package static var noInterrupt: UInt16 { 1 }

    /// `flags`, relaxed.
    @inlinable
    package var flags: UInt16 {
        get { UInt16(littleEndian: atomic16(base).pointee.load(ordering: .relaxed)) }
        nonmutating set { atomic16(base).pointee.store(newValue.littleEndian, ordering: .relaxed) }
    }

    /// `idx` with acquire ordering: entries and descriptors written before it are visible.
    @inlinable
    package func loadIndex() -> UInt16 { UInt16(littleEndian: atomic16(base + 2).pointee.load(ordering: .acquiring)) }

    /// Publishes `idx` with release ordering (SUP-DRV-01).
    @inlinable
    package func storeIndex(_ index: UInt16) { atomic16(base + 2).pointee.store(index.littleEndian, ordering: .releasing) }

    /// `ring[slot]`, relaxed. `slot` is an index already reduced modulo N.
    @inlinable
    package func entry(_ slot: Int) -> UInt16 {
        precondition(UInt(bitPattern: slot) < UInt(bitPattern: count))
        return UInt16(littleEndian: atomic16(base + 4 + slot &<< 1).pointee.load(ordering: .relaxed))
    }

    /// `ring[position mod N]`, for a free-running position (N is a power of 2).
    @inlinable
    func entry(wrapping position: UInt16) -> UInt16 {
        UInt16(littleEndian: atomic16(base + 4 + (Int(position) & mask) &<< 1).pointee.load(ordering: .relaxed))
    }

    /// Writes `ring[position mod N]`, for a free-running position (N is a power of 2).
    @inlinable
    func setEntry(wrapping position: UInt16, _ head: UInt16) {
        atomic16(base + 4 + (Int(position) & mask) &<< 1).pointee.store(head.littleEndian, ordering: .relaxed)
    }

    /// Writes `ring[position mod N]`, for a free-running non-negative position (N is a power of 2).
    @inlinable
    func setEntry(position: Int, _ head: UInt16) {
        atomic16(base + 4 + (position & mask) &<< 1).pointee.store(head.littleEndian, ordering: .relaxed)
    }

    /// Writes `ring[slot]`.
    @inlinable
    package func setEntry(_ slot: Int, _ head: UInt16) {
        precondition(UInt(bitPattern: slot) < UInt(bitPattern: count))
        atomic16(base + 4 + slot &<< 1).pointee.store(head.littleEndian, ordering: .relaxed)
    }

    /// `used_event` (meaningful only with EVENT_IDX), relaxed.
    @inlinable
    package var usedEvent: UInt16 {
        get { UInt16(littleEndian: atomic16(base + 4 + count &<< 1).pointee.load(ordering: .relaxed)) }
        nonmutating set { atomic16(base + 4 + count &<< 1).pointee.store(newValue.littleEndian, ordering: .relaxed) }
    }
}

/// The used ring (VIRTIO 1.2 §2.7.8): le16 flags, le16 idx, {le32 id, le32 len}[N], le16 avail_event.
@frozen @usableFromInline
package struct UnsafeUsedRing: @unchecked Sendable {
    @usableFromInline
    let base: UnsafeMutableRawPointer
    /// N, the number of ring entries.
    @usableFromInline package let count: Int

    @usableFromInline let mask: Int

    /// A view over `range`, which must hold at least 6 + 8·`count` bytes, 4-aligned.
    @inlinable
    package init(_ range: HostRange, count: Int) {
        precondition(range.count >= 6 + 8 * count && range.isAligned(to: 4))
        base = range.base
        self.count = count
        mask = count &- 1
    }

    /// VIRTQ_USED_F_NO_NOTIFY.
    @inlinable package static var noNotify: UInt16 { 1 }

    /// `flags`, relaxed.
    @inlinable
    package var flags: UInt16 {
        get { UInt16(littleEndian: atomic16(base).pointee.load(ordering: .relaxed)) }
        nonmutating set { atomic16(base).pointee.store(newValue.littleEndian, ordering: .relaxed) }
    }

    /// `idx` with acquire ordering: elements written before it are visible.
    @inlinable
    package func loadIndex() -> UInt16 { UInt16(littleEndian: atomic16(base + 2).pointee.load(ordering: .acquiring)) }

    /// Publishes `idx` with release ordering (USD-DEV-01).
    @inlinable
    package func storeIndex(_ index: UInt16) { atomic16(base + 2).pointee.store(index.littleEndian, ordering: .releasing) }

    /// `ring[slot]`, each field read once.
    @inlinable
    package func element(_ slot: Int) -> UsedElement {
        precondition(UInt(bitPattern: slot) < UInt(bitPattern: count))
        let p = base + 4 + slot &<< 3
        return UsedElement(id: UInt32(littleEndian: atomic32(p).pointee.load(ordering: .relaxed)),
                           length: UInt32(littleEndian: atomic32(p + 4).pointee.load(ordering: .relaxed)))
    }

    /// `ring[position mod N]`, for a free-running position (N is a power of 2).
    @inlinable
    func element(wrapping position: UInt16) -> UsedElement {
        let p = base + 4 + (Int(position) & mask) &<< 3
        return UsedElement(id: UInt32(littleEndian: atomic32(p).pointee.load(ordering: .relaxed)),
                           length: UInt32(littleEndian: atomic32(p + 4).pointee.load(ordering: .relaxed)))
    }

    /// Writes `ring[position mod N]`, for a free-running position (N is a power of 2).
    @inlinable
    func setElement(wrapping position: UInt16, _ element: UsedElement) {
        let p = base + 4 + (Int(position) & mask) &<< 3
        atomic32(p).pointee.store(element.id.littleEndian, ordering: .relaxed)
        atomic32(p + 4).pointee.store(element.length.littleEndian, ordering: .relaxed)
    }

    /// Writes `ring[slot]`.
    @inlinable
    package func setElement(_ slot: Int, _ element: UsedElement) {
        precondition(UInt(bitPattern: slot) < UInt(bitPattern: count))
        let p = base + 4 + slot &<< 3
        atomic32(p).pointee.store(element.id.littleEndian, ordering: .relaxed)
        atomic32(p + 4).pointee.store(element.length.littleEndian, ordering: .relaxed)
    }

    /// `avail_event` (meaningful only with EVENT_IDX), relaxed.
    @inlinable
    package var availEvent: UInt16 {
        get { UInt16(littleEndian: atomic16(base + 4 + count &<< 3).pointee.load(ordering: .relaxed)) }
        nonmutating set { atomic16(base + 4 + count &<< 3).pointee.store(newValue.littleEndian, ordering: .relaxed) }
    }
}

/// A full memory barrier between a store and a following load of another location
/// (SUP-DRV-03, and its device-side mirror before reading `used_event`).
@inlinable @inline(__always)
public func virtioFullBarrier() {
    atomicMemoryFence(ordering: .sequentiallyConsistent)
}
