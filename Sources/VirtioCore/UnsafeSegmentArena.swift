/// Private storage for the segments of popped chains.
///
/// Segments live in blocks of ``blockSize``, aligned to their size. Block `h` belongs to the
/// chain whose head is descriptor `h` (a head is in flight at most once, so block `h` is
/// always free when that head is popped): the chain's first segment is kept in the chain
/// value itself, segments 1 to 3 in slots 1 to 3 of block `h` (slot 0 is unused); longer
/// chains continue in overflow blocks taken from a free stack and linked behind it. Popping a
/// chain of up to four segments therefore allocates nothing and completing it frees nothing,
/// and a chain of one segment does not touch the arena at all.
@frozen @usableFromInline
struct UnsafeSegmentArena: @unchecked Sendable {
    @usableFromInline static var blockSize: Int { 4 }
    /// A block's size in bytes; blocks are aligned to it.
    @inlinable static var blockBytes: Int { blockSize &* MemoryLayout<ChainSegment>.stride }

    /// Whether `slot` is the first of its block (blocks are aligned to their size).
    @inlinable @inline(__always)
    static func isBlockStart(_ slot: UnsafeMutablePointer<ChainSegment>) -> Bool {
        UInt(bitPattern: slot) & UInt(blockBytes &- 1) == 0
    }

    /// What a chain needs to read its segments back: the blocks and their links.
    @usableFromInline let view: SegmentView
    @usableFromInline let freeStack: UnsafeMutablePointer<UInt32>
    @usableFromInline let headBlocks: Int
    @usableFromInline let overflowBlocks: Int

    /// The number of overflow blocks needed so that one chain of `queueSize` segments always
    /// fits when no other chain is in flight, doubled so that a long chain can be popped while
    /// another is being processed.
    @usableFromInline
    static func defaultOverflowBlocks(queueSize: Int) -> Int {
        max(2 * ((queueSize + blockSize - 1) / blockSize), 8)
    }

    /// Reserves the links, then the segments right behind them (the view finds the links
    /// below its segment pointer), then the free stack.
    @usableFromInline
    static func plan(_ plan: inout AllocationPlan, queueSize: Int, overflowBlocks: Int) -> (Int, Int, Int) {
        let blocks = queueSize + overflowBlocks
        return (plan.reserve(UInt32.self, count: blocks),
                plan.reserve(ChainSegment.self, count: blocks * blockSize, alignment: blockBytes),
                plan.reserve(UInt32.self, count: overflowBlocks))
    }

    @usableFromInline
    init(allocation: UnsafeAllocation, offsets: (Int, Int, Int), queueSize: Int, overflowBlocks: Int) {
        let blocks = queueSize + overflowBlocks
        // The links end at or below the segments (SegmentView.linkSlot relies on it).
        precondition(offsets.1 - offsets.0 >= blocks * MemoryLayout<UInt32>.stride)
        precondition(offsets.1 % Self.blockBytes == 0 && UnsafeAllocation.alignment % Self.blockBytes == 0)
        _ = allocation.carve(UInt32.self, at: offsets.0, count: blocks)
        view = SegmentView(segments: allocation.carve(ChainSegment.self, at: offsets.1, count: blocks * Self.blockSize))
        freeStack = allocation.carve(UInt32.self, at: offsets.2, count: overflowBlocks)
        headBlocks = queueSize
        self.overflowBlocks = overflowBlocks
    }

    /// Returns the `count` overflow blocks linked behind block `head` to the free stack, whose
    /// size is `freeCount`.
    @inlinable
    func releaseOverflow(after head: Int, count: Int, freeCount: inout Int) {
        var block = head
        for _ in 0..<count {
            block = view.link(after: block)
            freeStack[freeCount] = UInt32(block)
            freeCount &+= 1
        }
    }

    /// Fills the free stack with every overflow block; returns the free count.
    @usableFromInline
    func resetFreeStack() -> Int {
        for i in 0..<overflowBlocks { freeStack[i] = UInt32(headBlocks + i) }
        return overflowBlocks
    }
}

/// The blocks of a segment arena and the links between them.
///
/// One pointer: block `b`'s link (the block that continues its chain) is stored at index
/// `-1 - b` below the segments, so a chain carries a single pointer and reaching a link
/// costs no extra register.
@frozen @usableFromInline
struct SegmentView: @unchecked Sendable {
    @usableFromInline let segments: UnsafeMutablePointer<ChainSegment>

    @inlinable
    init(segments: UnsafeMutablePointer<ChainSegment>) {
        self.segments = segments
    }

    @inlinable
    func linkSlot(_ block: Int) -> UnsafeMutablePointer<UInt32> {
        UnsafeMutableRawPointer(segments).assumingMemoryBound(to: UInt32.self) - 1 - block
    }

    /// The block that continues the chain after block `block`.
    @inlinable
    func link(after block: Int) -> Int { Int(linkSlot(block).pointee) }

    /// Records that block `next` continues the chain after block `block`.
    @inlinable
    func setLink(after block: Int, to next: UInt32) { linkSlot(block).pointee = next }
}
