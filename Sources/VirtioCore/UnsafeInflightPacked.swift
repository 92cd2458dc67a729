import Synchronization

// The unsafe core of a packed queue's in-flight area (QEMU vhost-user.rst "Inflight I/O
// tracking", `QueueRegionPacked`): typed reads and writes of its 32-byte header and 32-byte
// `DescStatePacked` entries in the shared file, each field through an atomic bound in place
// (one fetch per read, no torn value). Neighbouring fields the back-end writes together go in
// one store: an entry's inflight/next/last/num, its id/flags/len, the two free heads, the used
// position with its committed copy. The stores that are a commit point (the free heads, the
// used positions) are release stores, so that the order survives a crash of this process at any
// instruction. Indices are the callers' to check: ``InflightPackedTracker`` keeps its own,
// ``InflightPackedRecovery`` checks every one it reads.

/// One packed queue's in-flight area: a 32-byte header and 32-byte entries.
@frozen
public struct UnsafeInflightPacked: @unchecked Sendable {
    @usableFromInline let base: UnsafeMutableRawPointer
    /// The entries the area holds.
    public let capacity: Int

    /// A view of `range`, or nil when it is not 8-byte aligned or cannot hold the header.
    public init?(_ range: HostRange) {
        guard range.isAligned(to: 8), range.count >= InflightLayout.packedHeaderSize else { return nil }
        base = range.base
        capacity = (range.count - InflightLayout.packedHeaderSize) / InflightLayout.packedEntrySize
    }

    @inlinable @inline(__always)
    func entry(_ i: Int) -> UnsafeMutableRawPointer { base + (InflightLayout.packedHeaderSize &+ i &* InflightLayout.packedEntrySize) }

    // MARK: Header: u64 features, u16 version, desc_num, free_head, old_free_head, used_idx,
    // old_used_idx, u8 used_wrap_counter, old_used_wrap_counter

    public var features: UInt64 {
        get { atomic64(base).pointee.load(ordering: .relaxed) }
        nonmutating set { atomic64(base).pointee.store(newValue, ordering: .relaxed) }
    }
    public var version: UInt16 {
        get { atomic16(base + 8).pointee.load(ordering: .relaxed) }
        nonmutating set { atomic16(base + 8).pointee.store(newValue, ordering: .releasing) }
    }
    public var descriptorCount: UInt16 {
        get { atomic16(base + 10).pointee.load(ordering: .relaxed) }
        nonmutating set { atomic16(base + 10).pointee.store(newValue, ordering: .relaxed) }
    }
    public var freeHead: UInt16 {
        get { atomic16(base + 12).pointee.load(ordering: .relaxed) }
        nonmutating set { atomic16(base + 12).pointee.store(newValue, ordering: .releasing) }
    }
    public var oldFreeHead: UInt16 {
        get { atomic16(base + 14).pointee.load(ordering: .relaxed) }
        nonmutating set { atomic16(base + 14).pointee.store(newValue, ordering: .releasing) }
    }
    /// `free_head` and `old_free_head` in one release store (a pop moves both).
    @inlinable @inline(__always)
    public func setFreeHeads(_ value: UInt16) {
        atomic32(base + 12).pointee.store(UInt32(value) | UInt32(value) &<< 16, ordering: .releasing)
    }

    /// The used position the last batch reached (`used_idx`, `used_wrap_counter`), raw: the
    /// slot and the wrap counter byte as they are, for the recovery to check.
    public var usedIndex: UInt16 { atomic16(base + 16).pointee.load(ordering: .relaxed) }
    public var oldUsedIndex: UInt16 { atomic16(base + 18).pointee.load(ordering: .relaxed) }
    public var usedWrapCounter: UInt8 { atomic8(base + 20).pointee.load(ordering: .relaxed) }
    public var oldUsedWrapCounter: UInt8 { atomic8(base + 21).pointee.load(ordering: .relaxed) }

    /// `used_idx`, `old_used_idx`, `used_wrap_counter` and `old_used_wrap_counter` in one
    /// release store (the two padding bytes after them are zero).
    @inlinable @inline(__always)
    public func setUsed(_ current: PackedRingPosition, committed: PackedRingPosition) {
        let word = UInt64(current.slot) | UInt64(committed.slot) &<< 16
            | UInt64(current.wrapCounter ? 1 : 0) &<< 32 | UInt64(committed.wrapCounter ? 1 : 0) &<< 40
        atomic64(base + 16).pointee.store(word, ordering: .releasing)
    }

    // MARK: Entries: u8 inflight, u8 padding, u16 next, last, num, u64 counter, u16 id, flags,
    // u32 len, u64 addr

    /// Entry `i`'s `inflight` byte; cleared with release.
    @inlinable @inline(__always)
    public func flag(_ i: Int) -> UInt8 { atomic8(entry(i)).pointee.load(ordering: .relaxed) }
    @inlinable @inline(__always)
    public func setFlag(_ i: Int, _ value: UInt8) { atomic8(entry(i)).pointee.store(value, ordering: .releasing) }
    @inlinable @inline(__always)
    public func next(_ i: Int) -> UInt16 { atomic16(entry(i) + 2).pointee.load(ordering: .relaxed) }
    @inlinable @inline(__always)
    public func setNext(_ i: Int, _ value: UInt16) { atomic16(entry(i) + 2).pointee.store(value, ordering: .relaxed) }
    @inlinable @inline(__always)
    public func last(_ i: Int) -> UInt16 { atomic16(entry(i) + 4).pointee.load(ordering: .relaxed) }
    @inlinable @inline(__always)
    public func num(_ i: Int) -> UInt16 { atomic16(entry(i) + 6).pointee.load(ordering: .relaxed) }
    /// A head entry's first 8 bytes in one store: `inflight`, `next`, `last`, `num`.
    @inlinable @inline(__always)
    public func setHead(_ i: Int, inflight: UInt8, next: UInt16, last: UInt16, num: UInt16) {
        let word = UInt64(inflight) | UInt64(next) &<< 16 | UInt64(last) &<< 32 | UInt64(num) &<< 48
        atomic64(entry(i)).pointee.store(word, ordering: .relaxed)
    }
    @inlinable @inline(__always)
    public func counter(_ i: Int) -> UInt64 { atomic64(entry(i) + 8).pointee.load(ordering: .relaxed) }
    @inlinable @inline(__always)
    public func setCounter(_ i: Int, _ value: UInt64) { atomic64(entry(i) + 8).pointee.store(value, ordering: .relaxed) }

    /// Entry `i`'s copy of a ring descriptor (`id`, `flags`, `len`, `addr`).
    @inlinable @inline(__always)
    public func descriptor(_ i: Int) -> PackedDescriptor {
        let w = atomic64(entry(i) + 16).pointee.load(ordering: .relaxed)
        let address = atomic64(entry(i) + 24).pointee.load(ordering: .relaxed)
        return PackedDescriptor(address: address, length: UInt32(truncatingIfNeeded: w &>> 32),
                                id: UInt16(truncatingIfNeeded: w), flags: PackedDescriptorFlags(rawValue: UInt16(truncatingIfNeeded: w &>> 16)))
    }
    /// Copies `d` into entry `i`: id, flags and len in one store (the ring's len/id/flags word
    /// turned by 32 bits), the address in another.
    @inlinable @inline(__always)
    public func setDescriptor(_ i: Int, _ d: PackedDescriptor) {
        let w = UInt64(d.id) | UInt64(d.flags.rawValue) &<< 16 | UInt64(d.length) &<< 32
        atomic64(entry(i) + 16).pointee.store(w, ordering: .relaxed)
        atomic64(entry(i) + 24).pointee.store(d.address, ordering: .relaxed)
    }
}
