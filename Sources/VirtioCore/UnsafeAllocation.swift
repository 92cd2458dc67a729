/// One zeroed heap block holding a queue's private bookkeeping (in-flight tables, free lists,
/// the segment arena): the one place those arrays are allocated and bound to their types.
///
/// The queue keeps typed pointers into it so that its hot path touches no class (no ARC, no
/// exclusivity checks) and holds the allocation beside them for as long as it uses them.
///
/// Invariants:
/// - `base` is valid for `byteCount` bytes, aligned to ``alignment``, zeroed at creation and
///   freed only by `deinit`, so every pointer ``carve(_:at:count:)`` returns lives exactly as
///   long as the object (its owner stores both).
/// - The regions are laid out once by an ``AllocationPlan`` and never overlap; each is bound to
///   one type, once, by ``carve(_:at:count:)``, which checks it lies inside the block and is
///   aligned for the type.
/// - The memory is private to one queue, never shared with a peer: plain loads and stores.
@usableFromInline
final class UnsafeAllocation: @unchecked Sendable {
    /// The block's alignment: a cache line, and the segment arena's block size.
    @usableFromInline static var alignment: Int { 64 }

    @usableFromInline let base: UnsafeMutableRawPointer
    @usableFromInline let byteCount: Int

    @usableFromInline
    init(byteCount: Int) {
        self.byteCount = max(byteCount, 1)
        base = UnsafeMutableRawPointer.allocate(byteCount: self.byteCount, alignment: Self.alignment)
        base.initializeMemory(as: UInt8.self, repeating: 0, count: self.byteCount)
    }

    /// A block of the size `plan` reserved.
    @usableFromInline
    convenience init(_ plan: AllocationPlan) { self.init(byteCount: plan.size) }

    /// Binds the `count` elements of `T` at byte `offset` (an offset ``AllocationPlan`` returned)
    /// and returns them; they stay valid as long as this object.
    @usableFromInline
    func carve<T>(_: T.Type, at offset: Int, count: Int) -> UnsafeMutablePointer<T> {
        precondition(offset >= 0 && count >= 0 && offset % MemoryLayout<T>.alignment == 0
                     && count <= (byteCount - offset) / Swift.max(MemoryLayout<T>.stride, 1), "carved region outside the allocation")
        return (base + offset).bindMemory(to: T.self, capacity: count)
    }

    deinit { base.deallocate() }
}

/// Lays out typed arrays in one ``UnsafeAllocation``.
@usableFromInline
struct AllocationPlan {
    @usableFromInline var size = 0

    @usableFromInline init() {}

    /// Reserves `count` elements of `T`, aligned to at least `alignment` bytes (a power of 2 up
    /// to the allocation's 64), and returns their byte offset.
    @usableFromInline
    mutating func reserve<T>(_: T.Type, count: Int, alignment: Int = 1) -> Int {
        let a = Swift.max(MemoryLayout<T>.alignment, alignment)
        precondition(a <= UnsafeAllocation.alignment)
        let offset = (size + a - 1) & ~(a - 1)
        size = offset + MemoryLayout<T>.stride * count
        return offset
    }
}
