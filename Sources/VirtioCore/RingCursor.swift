/// A consumer's position in a ring the peer produces into (the device's in the available
/// ring), packed in one word so that the hot path reads it with one load and writes it with
/// one store: on this path loads cost several times what arithmetic does.
///
/// Bits 48–63 hold the next position to consume, bits 32–47 flags the owner keeps with it,
/// bits 16–31 the limit (how far the peer's index may run ahead of it, plus one: N, or 0 once
/// the queue is broken) and bits 0–15 the peer's index as last read, the end of what may be
/// consumed. The next position is on top so that advancing it wraps without carrying into the
/// other fields.
@frozen @usableFromInline
struct RingCursor {
    @usableFromInline var word: UInt64

    @inlinable
    init(word: UInt64) {
        self.word = word
    }

    /// A cursor at `position` with nothing read yet.
    @inlinable
    init(position: UInt16, limit: UInt16) {
        word = UInt64(position) &<< 48 | UInt64(limit) &<< 16 | UInt64(position)
    }

    /// The next position to consume.
    @inlinable var next: UInt16 { UInt16(truncatingIfNeeded: word &>> 48) }
    /// The peer's index as last read.
    @inlinable var end: UInt16 { UInt16(truncatingIfNeeded: word) }
    @inlinable var limit: UInt16 { UInt16(truncatingIfNeeded: word &>> 16) }
    /// The owner's flags.
    @inlinable var flags: UInt16 { UInt16(truncatingIfNeeded: word &>> 32) }
    /// Whether everything read has been consumed.
    @inlinable var isCaughtUp: Bool { next == end }

    /// Whether the peer's index may be `index`: 1 to `limit` entries past `next` (so never
    /// once the limit is 0).
    @inlinable
    func accepts(_ index: UInt16) -> Bool { index &- next &- 1 < limit }

    /// The cursor one position further.
    @inlinable
    func advanced() -> RingCursor { RingCursor(word: word &+ 1 &<< 48) }

    /// The cursor one position back (a consumed entry given back).
    @inlinable
    func retreated() -> RingCursor { RingCursor(word: word &- 1 &<< 48) }

    /// The cursor with the peer's index read as `index`.
    @inlinable
    func reading(_ index: UInt16) -> RingCursor { RingCursor(word: word & ~0xFFFF | UInt64(index)) }

    /// The cursor with the owner's flags set to `flags`.
    @inlinable
    func flagged(_ flags: UInt16) -> RingCursor { RingCursor(word: word & ~(0xFFFF &<< 32) | UInt64(flags) &<< 32) }

    /// The cursor with nothing left to consume and a limit of 0: every later read goes to
    /// the slow path (a broken queue). The flags are kept.
    @inlinable
    func closed() -> RingCursor { RingCursor(position: next, limit: 0).flagged(flags) }
}
