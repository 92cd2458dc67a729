/// Keeps a packed queue's in-flight area current on the hot path (Spec/restart.md §1,
/// GHT-INF-09, GHT-INF-10, GHT-INF-11): a few stores per descriptor into the shared area, no
/// allocation, no lock. QEMU's algorithm, with our batches:
///
/// - pop: each descriptor of the list (or the one INDIRECT descriptor) is copied into the next
///   free entry; the first takes `num`, `last`, the next counter and `inflight` 1; then both
///   free heads move past the list in one store (the pop's own commit point);
/// - used entry: the chain's entries are only noted, privately;
/// - when a batch's used descriptors become visible (the first of the batch is written last,
///   GHT-PKD-11): before that write the noted chains are pushed onto the free list and
///   `free_head`, `used_idx`, `used_wrap_counter` move; after it every head of the batch gets
///   `inflight` 0, then `old_free_head` and the old used position catch up: the commit point
///   covers the whole batch, and a crash on either side of the write is told apart by the
///   next back-end from the ring slot at the old used position.
///
/// The free list is followed in a private copy of the links the tracker writes, never in the
/// area: what the front-end scribbles there misleads only its own recovery, never an access of
/// ours. Pops never take an entry a batch not yet committed gave back.
@frozen
public struct InflightPackedTracker: @unchecked Sendable {
    public let area: UnsafeInflightPacked
    @usableFromInline let count: Int
    @usableFromInline let scratch: Scratch
    /// The head of the free list (committed: pops and batches commit before returning).
    @usableFromInline var freeHead: Int
    /// The used position the area's old fields hold.
    @usableFromInline var committedUsed: PackedRingPosition
    /// The counter the next pop takes.
    public var counter: UInt64
    /// Chains used since the last commit, and where the free list starts once they are pushed.
    @usableFromInline var batchCount = 0
    @usableFromInline var pushedHead = 0
    /// The list being popped: the entry its next descriptor goes to, its last, how many so far.
    @usableFromInline var stageEntry = 0
    @usableFromInline var stageLast = 0
    @usableFromInline var staged = 0

    /// Private memory: `next` links per entry, per buffer id its head entry and last entry, the
    /// batch's chains (head | last << 16).
    @usableFromInline
    final class Scratch: @unchecked Sendable {
        @usableFromInline let next: UnsafeMutablePointer<UInt16>
        @usableFromInline let chainOf: UnsafeMutablePointer<UInt32>
        @usableFromInline let batch: UnsafeMutablePointer<UInt32>
        init(count: Int) {
            next = .allocate(capacity: count)
            chainOf = .allocate(capacity: count)
            chainOf.initialize(repeating: 0, count: count)
            batch = .allocate(capacity: count)
            batch.initialize(repeating: 0, count: count)
        }
        deinit {
            next.deallocate()
            chainOf.deallocate()
            batch.deallocate()
        }
    }

    /// Tracks in `area`, recovered (or initialized) as `recovery` says, for a ring of `queueSize`.
    public init(area: UnsafeInflightPacked, queueSize: Int, recovery: InflightPackedRecovery) {
        self.area = area
        count = queueSize
        scratch = Scratch(count: queueSize)
        for i in 0..<queueSize { scratch.next[i] = recovery.links[i] }
        for chain in recovery.resubmit { scratch.chainOf[Int(chain.id)] = UInt32(chain.entry) | UInt32(chain.last) &<< 16 }
        freeHead = Int(recovery.freeHead)
        committedUsed = recovery.usedPosition
        counter = recovery.nextCounter
    }

    /// A list is about to be walked: its descriptors go to the free entries from the head on.
    @inlinable @inline(__always)
    public mutating func beginList() {
        stageEntry = freeHead
        staged = 0
    }

    /// Copies descriptor `d` of the list being walked. `false` when no entry is free: the
    /// driver has more ring slots in flight than the ring holds.
    @inlinable @inline(__always)
    public mutating func stage(_ d: PackedDescriptor) -> Bool {
        let e = stageEntry
        guard e < count else { return false }
        area.setDescriptor(e, d)
        stageLast = e
        stageEntry = Int(scratch.next[e])
        staged &+= 1
        return true
    }

    /// The list staged since ``beginList()`` was popped as buffer `id`: its head entry is
    /// marked in flight with the next counter, then both free heads move past it.
    @inlinable @inline(__always)
    public mutating func popped(id: UInt16) {
        let head = freeHead
        area.setCounter(head, counter)
        counter &+= 1
        area.setHead(head, inflight: 1, next: scratch.next[head], last: UInt16(truncatingIfNeeded: stageLast),
                     num: UInt16(truncatingIfNeeded: staged))
        scratch.chainOf[Int(id)] = UInt32(head) | UInt32(stageLast) &<< 16
        freeHead = stageEntry
        area.setFreeHeads(UInt16(truncatingIfNeeded: stageEntry))
    }

    /// A resubmitted chain was popped as buffer `id`: its entries, still in flight with their
    /// first counter, are the ones the recovery found.
    @inlinable
    public func resubmitted(id: UInt16, entry: UInt16, last: UInt16) {
        scratch.chainOf[Int(id)] = UInt32(entry) | UInt32(last) &<< 16
    }

    /// Buffer `id`'s used descriptor was added (not yet visible).
    @inlinable @inline(__always)
    public mutating func used(id: UInt16) {
        guard batchCount < count else { return }
        scratch.batch[batchCount] = scratch.chainOf[Int(id)]
        batchCount &+= 1
    }

    /// Before the write that makes the batch visible: its chains go onto the free list and the
    /// current fields move to `usedPosition` (the old ones stay: not committed yet).
    @inlinable @inline(__always)
    public mutating func prepare(usedPosition: PackedRingPosition) {
        guard batchCount > 0 else { return }
        var head = freeHead
        for k in 0..<batchCount {
            let chain = scratch.batch[k]
            let last = Int(chain &>> 16)
            scratch.next[last] = UInt16(truncatingIfNeeded: head)
            area.setNext(last, UInt16(truncatingIfNeeded: head))
            head = Int(chain & 0xFFFF)
        }
        pushedHead = head
        area.freeHead = UInt16(truncatingIfNeeded: head)
        area.setUsed(usedPosition, committed: committedUsed)
        committedUsed = usedPosition
    }

    /// After that write: the batch's heads are no longer in flight, then the old fields catch
    /// up (`old_free_head` first, the old used position last).
    @inlinable @inline(__always)
    public mutating func commit() {
        guard batchCount > 0 else { return }
        for k in 0..<batchCount { area.setFlag(Int(scratch.batch[k] & 0xFFFF), 0) }
        batchCount = 0
        freeHead = pushedHead
        area.oldFreeHead = UInt16(truncatingIfNeeded: pushedHead)
        area.setUsed(committedUsed, committed: committedUsed)
    }

    /// The batch was dropped unwritten (the queue broke): its chains stay in flight.
    @inlinable
    public mutating func dropBatch() { batchCount = 0 }

    /// Buffer `id`'s pop was undone (it goes back to the ring): its entries go back to the free
    /// list and it is not in flight.
    @inlinable
    public mutating func givenBack(id: UInt16) {
        let chain = scratch.chainOf[Int(id)]
        let head = Int(chain & 0xFFFF), last = Int(chain &>> 16)
        area.setFlag(head, 0)
        scratch.next[last] = UInt16(truncatingIfNeeded: freeHead)
        area.setNext(last, UInt16(truncatingIfNeeded: freeHead))
        freeHead = head
        area.setFreeHeads(UInt16(truncatingIfNeeded: head))
    }
}
