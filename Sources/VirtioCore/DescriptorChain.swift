/// One buffer of a descriptor chain, as the device read it from the ring (once) and
/// validated it: a device-visible address, a length and its direction.
@frozen
public struct ChainSegment: Hashable, Sendable {
    public var address: UInt64
    /// Bits 0–31: the length; bit 33: device-writable (the descriptor's len and flags as they
    /// sit in its second word, so popping a chain copies that word unchanged). Other bits are
    /// ignored.
    @usableFromInline var word: UInt64

    @inlinable static var writableBit: UInt64 { UInt64(DescriptorFlags.write.rawValue) &<< 32 }

    @inlinable
    public init(address: UInt64, length: UInt32, isWritable: Bool) {
        self.address = address
        word = UInt64(length) | (isWritable ? Self.writableBit : 0)
    }

    /// A segment from a descriptor's two words (flags other than WRITE and `next` are ignored).
    @inlinable
    init(address: UInt64, descriptorWord: UInt64) {
        self.address = address
        word = descriptorWord
    }

    public var length: UInt32 {
        @inlinable get { UInt32(truncatingIfNeeded: word) }
        @inlinable set { word = word & ~0xFFFF_FFFF | UInt64(newValue) }
    }

    /// Whether the buffer is device-writable (otherwise it is device-readable).
    public var isWritable: Bool {
        @inlinable get { word & Self.writableBit != 0 }
        @inlinable set { word = newValue ? word | Self.writableBit : word & ~Self.writableBit }
    }

    /// The access the device may perform on this segment.
    @inlinable
    public var access: MemoryAccess { isWritable ? .write : .read }

    @inlinable
    public static func == (a: ChainSegment, b: ChainSegment) -> Bool {
        a.address == b.address && a.length == b.length && a.isWritable == b.isWritable
    }

    @inlinable
    public func hash(into hasher: inout Hasher) {
        hasher.combine(address)
        hasher.combine(length)
        hasher.combine(isWritable)
    }
}

/// A descriptor chain popped from a device queue: the head index that identifies it in the
/// used ring and its validated segments, device-readable ones first.
///
/// The segments are a private copy made when the chain was popped (no double fetch): the first
/// in the chain value itself, the others in the queue's segment arena (from slot 1 of the
/// head's block on). A chain of one descriptor, the common case, thus never touches the arena.
/// A chain stays valid until it is completed with `addUsed`; using it afterwards reads
/// segments that belong to another chain.
@frozen
public struct DescriptorChain: @unchecked Sendable {
    /// The head as a word: one value serves as an index and as the used element's id (a
    /// 16-bit field would be widened twice, and both copies kept).
    @usableFromInline let head: Int
    @usableFromInline let segmentTotal: UInt16
    @usableFromInline let readableTotal: UInt16
    @usableFromInline let epoch: UInt32
    /// The total length of the device-readable segments.
    public let readableLength: UInt64
    /// The total length of the device-writable segments.
    public let writableLength: UInt64
    @usableFromInline let view: SegmentView
    /// The first segment (every chain has one).
    @usableFromInline let first: ChainSegment

    @inlinable
    init(headIndex: UInt16, epoch: UInt32, first: ChainSegment, segmentCount: Int, readableSegmentCount: Int,
         readableLength: UInt64, writableLength: UInt64, view: SegmentView) {
        head = Int(headIndex)
        self.first = first
        self.epoch = epoch
        segmentTotal = UInt16(truncatingIfNeeded: segmentCount)
        readableTotal = UInt16(truncatingIfNeeded: readableSegmentCount)
        self.readableLength = readableLength
        self.writableLength = writableLength
        self.view = view
    }

    /// The index of the chain's first descriptor, which the used ring reports back (USD-DEF-01).
    @inlinable
    public var headIndex: UInt16 { UInt16(truncatingIfNeeded: head) }

    /// The number of segments (buffers) in the chain, indirect entries included.
    @inlinable
    public var segmentCount: Int { Int(segmentTotal) }
    /// The number of leading device-readable segments.
    @inlinable
    public var readableSegmentCount: Int { Int(readableTotal) }

    /// The segments in chain order.
    @inlinable
    public var segments: ChainSegments { ChainSegments(first: first, view: view, head: head, count: segmentCount) }
}

/// The segments of a ``DescriptorChain``, in chain order.
@frozen
public struct ChainSegments: Sequence, @unchecked Sendable {
    @usableFromInline let first: ChainSegment
    @usableFromInline let view: SegmentView
    @usableFromInline let head: Int
    public let count: Int

    @inlinable
    init(first: ChainSegment, view: SegmentView, head: Int, count: Int) {
        self.first = first
        self.view = view
        self.head = head
        self.count = count
    }

    @inlinable
    public func makeIterator() -> Iterator { Iterator(first: first, view: view, head: head, count: count) }

    @inlinable
    public var underestimatedCount: Int { count }

    /// Returns the chain's first segment (held in the chain), then the others from the arena:
    /// slots 1 to 3 of the head's block, then the slots of each linked overflow block.
    ///
    /// A step is a count test, a load and, to tell the end of a block, a test of the slot's
    /// address (blocks are 64-byte aligned); only crossing to the next block reads a link.
    @frozen
    public struct Iterator: IteratorProtocol {
        /// The first segment, until it has been returned.
        @usableFromInline var pending: ChainSegment?
        /// The next arena slot.
        @usableFromInline var slot: UnsafeMutablePointer<ChainSegment>
        /// The segments left in the arena.
        @usableFromInline var remaining: Int
        @usableFromInline let view: SegmentView

        @inlinable
        init(first: ChainSegment, view: SegmentView, head: Int, count: Int) {
            self.view = view
            pending = first
            slot = view.segments + (head &* UnsafeSegmentArena.blockSize &+ 1)
            remaining = count &- 1
        }

        @inlinable @inline(__always)
        public mutating func next() -> ChainSegment? {
            if let first = pending {
                pending = nil
                return first
            }
            guard remaining != 0 else { return nil }
            remaining &-= 1
            if _slowPath(UnsafeSegmentArena.isBlockStart(slot)) { nextBlock() }
            defer { slot += 1 }
            return slot.pointee
        }

        /// Skips `n` segments (at most the number left).
        @inlinable
        mutating func advance(by n: Int) {
            for _ in 0..<n { _ = next() }
        }

        /// Moves from the end of a block to the block linked behind it. (Inlined so the
        /// iterator stays in registers: an out-of-line call would take its address.)
        @inlinable @inline(__always)
        mutating func nextBlock() {
            let block = (slot - view.segments) / UnsafeSegmentArena.blockSize &- 1
            slot = view.segments + view.link(after: block) &* UnsafeSegmentArena.blockSize
        }
    }

    /// The segments as an array (allocates; for tests and slow paths).
    public var array: [ChainSegment] { Array(self) }
}
