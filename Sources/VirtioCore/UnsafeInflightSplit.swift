import Synchronization

// The unsafe core of a split queue's in-flight area (QEMU vhost-user.rst "Inflight I/O
// tracking", `QueueRegionSplit`): typed reads and writes of its header and `DescStateSplit`
// entries in the shared file. Every field is reached through an atomic bound in place (one
// fetch per read, no torn value). The stores that must reach the area in a set order around
// the used ring's index (flags cleared after it, `used_idx` last) are release stores: the
// order survives a crash of this process at any instruction, which is all that matters here
// (the area outlives the process, its reader is the next back-end). Indices are masked or
// checked by the callers: ``InflightSplitTracker`` masks, ``InflightSplitRecovery`` checks.

@inlinable @inline(__always)
func atomic8(_ p: UnsafeMutableRawPointer) -> UnsafeMutablePointer<Atomic<UInt8>> {
    p.assumingMemoryBound(to: Atomic<UInt8>.self)
}

/// One split queue's in-flight area: a 16-byte header and 16-byte entries.
@frozen
public struct UnsafeInflightSplit: @unchecked Sendable {
    @usableFromInline let base: UnsafeMutableRawPointer
    /// The entries the area holds.
    public let capacity: Int

    /// A view of `range`, or nil when it is not 8-byte aligned or cannot hold the header.
    public init?(_ range: HostRange) {
        guard range.isAligned(to: 8), range.count >= InflightLayout.splitHeaderSize else { return nil }
        base = range.base
        capacity = (range.count - InflightLayout.splitHeaderSize) / InflightLayout.splitEntrySize
    }

    @inlinable @inline(__always)
    func entry(_ i: Int) -> UnsafeMutableRawPointer { base + (InflightLayout.splitHeaderSize &+ i &* InflightLayout.splitEntrySize) }

    // MARK: Header: u64 features, u16 version, u16 desc_num, u16 last_batch_head, u16 used_idx

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
    public var lastBatchHead: UInt16 {
        @inlinable get { atomic16(base + 12).pointee.load(ordering: .relaxed) }
        @inlinable nonmutating set { atomic16(base + 12).pointee.store(newValue, ordering: .relaxed) }
    }
    /// Written last after a batch, with release: every flag of the batch is clear before it moves.
    public var usedIndex: UInt16 {
        @inlinable get { atomic16(base + 14).pointee.load(ordering: .relaxed) }
        @inlinable nonmutating set { atomic16(base + 14).pointee.store(newValue, ordering: .releasing) }
    }

    // MARK: Entries: u8 inflight, 5 bytes padding, u16 next, u64 counter

    /// Entry `i`'s `inflight` byte. Cleared with release (after the used index it follows).
    @inlinable @inline(__always)
    public func flag(_ i: Int) -> UInt8 { atomic8(entry(i)).pointee.load(ordering: .relaxed) }
    @inlinable @inline(__always)
    public func setFlag(_ i: Int, _ value: UInt8) { atomic8(entry(i)).pointee.store(value, ordering: .releasing) }
    @inlinable @inline(__always)
    public func next(_ i: Int) -> UInt16 { atomic16(entry(i) + 6).pointee.load(ordering: .relaxed) }
    @inlinable @inline(__always)
    public func setNext(_ i: Int, _ value: UInt16) { atomic16(entry(i) + 6).pointee.store(value, ordering: .relaxed) }
    @inlinable @inline(__always)
    public func counter(_ i: Int) -> UInt64 { atomic64(entry(i) + 8).pointee.load(ordering: .relaxed) }
    @inlinable @inline(__always)
    public func setCounter(_ i: Int, _ value: UInt64) { atomic64(entry(i) + 8).pointee.store(value, ordering: .relaxed) }
}
