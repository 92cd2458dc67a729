/// Keeps a split queue's in-flight area current on the hot path (Spec/restart.md §1,
/// GHT-INF-05, GHT-INF-06): a few stores per chain into the shared area, no allocation, no lock.
///
/// - pop: the head's `counter` takes the next counter value, then its `inflight` byte becomes 1;
/// - used entry: the head is linked into the batch list (`next` = `last_batch_head`,
///   `last_batch_head` = head);
/// - after the used index is published: every head of the batch gets `inflight` 0, then
///   `used_idx` takes the published index.
///
/// A batch is every used entry one store of `used.idx` publishes, however many (GHT-INF-06): the
/// next back-end clears the whole list when `used_idx` lags the ring (``InflightSplitRecovery``),
/// not only its first entry as libvhost-user does, which would resubmit the rest of a batch
/// that was already completed.
@frozen
public struct InflightSplitTracker: @unchecked Sendable {
    public let area: UnsafeInflightSplit
    @usableFromInline let mask: Int
    /// The counter the next pop takes.
    public var counter: UInt64
    /// Used entries linked since the last publication.
    @usableFromInline var batchCount = 0

    /// Tracks in `area`, already recovered or initialized for a ring of `queueSize` (a power of 2).
    public init(area: UnsafeInflightSplit, queueSize: Int, counter: UInt64) {
        self.area = area
        mask = queueSize - 1
        self.counter = counter
    }

    /// A chain with head `head` was popped (or resubmitted with a new counter).
    @inlinable @inline(__always)
    public mutating func popped(_ head: Int) {
        area.setCounter(head, counter)
        counter &+= 1
        area.setFlag(head, 1)
    }

    /// A popped chain's pop was undone (it goes back to the ring): it is not in flight.
    @inlinable
    public func givenBack(_ head: Int) { area.setFlag(head, 0) }

    /// The used entry of head `head` was written (not yet published).
    @inlinable @inline(__always)
    public mutating func used(_ head: Int) {
        area.setNext(head, area.lastBatchHead)
        area.lastBatchHead = UInt16(truncatingIfNeeded: head)
        batchCount &+= 1
    }

    /// The used index `usedIndex` was published: the batch's flags are cleared, then `used_idx`
    /// moves. The list is walked from `last_batch_head` for exactly the batch's length, each link
    /// masked to the ring: what the front-end may have scribbled there only misleads its own
    /// recovery, never an access of ours.
    @inlinable @inline(__always)
    public mutating func published(usedIndex: UInt16) {
        guard batchCount > 0 else { return }
        var head = Int(area.lastBatchHead) & mask
        for _ in 0..<batchCount {
            area.setFlag(head, 0)
            head = Int(area.next(head)) & mask
        }
        batchCount = 0
        area.usedIndex = usedIndex
    }
}
