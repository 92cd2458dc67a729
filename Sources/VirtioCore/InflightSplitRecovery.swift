/// What a split queue resumes with when it starts over an in-flight area (Spec/restart.md §1,
/// GHT-INF-07, GHT-INF-08): the area is the front-end's memory, left by a back-end that may have
/// died at any instruction, or written by a hostile front-end; every field is checked before it
/// is believed.
public struct InflightSplitRecovery: Equatable, Sendable {
    /// The heads in flight, to resubmit before any new chain, in the order they were popped
    /// (their counters, ascending). Distinct, each below the queue size.
    public var resubmit: [UInt16]
    /// The counter the next pop takes: one past the largest in flight.
    public var nextCounter: UInt64
    /// The next available index: the used index plus the requests in flight (libvhost-user's
    /// `last_avail_idx = used_idx + inuse`), whatever SET_VRING_BASE said (QEMU sends the used
    /// index after a back-end died, and our own GET_VRING_BASE's value equals this).
    public var nextAvail: UInt16

    public init(resubmit: [UInt16], nextCounter: UInt64, nextAvail: UInt16) {
        self.resubmit = resubmit
        self.nextCounter = nextCounter
        self.nextAvail = nextAvail
    }

    /// Recovers (or, for version 0, initializes) `area` for a ring of `queueSize` entries whose
    /// used ring's index is `usedIndex`.
    ///
    /// - Version 0 (returns nil): a fresh area; the header is written (version 1, `desc_num`,
    ///   `used_idx`) and every flag cleared; nothing is resubmitted, the counter starts at 0 and
    ///   the queue resumes where SET_VRING_BASE said.
    /// - Otherwise: version 1, `desc_num` the ring's size; if `used_idx` lags `used.idx`, the
    ///   last batch (that many entries from `last_batch_head`, never an entry twice, never beyond
    ///   the ring) was published before its flags were cleared: its flags are cleared now and
    ///   `used_idx` catches up. Then every flag must be 0 or 1 and the counters in flight distinct.
    public static func recover(_ area: UnsafeInflightSplit, queueSize: Int,
                               usedIndex: UInt16) throws(InflightRegionDefect) -> InflightSplitRecovery? {
        guard area.capacity >= queueSize else {
            throw .areaTooSmall(bytes: InflightLayout.splitHeaderSize + area.capacity * InflightLayout.splitEntrySize, queueSize: queueSize)
        }
        let version = area.version
        if version == 0 {
            for i in 0..<queueSize { area.setFlag(i, 0) }
            area.features = 0
            area.descriptorCount = UInt16(truncatingIfNeeded: queueSize)
            area.lastBatchHead = 0
            area.usedIndex = usedIndex
            area.version = InflightLayout.version
            return nil
        }
        guard version == InflightLayout.version else { throw .version(version) }
        let count = area.descriptorCount
        guard Int(count) == queueSize else { throw .descriptorCount(count, queueSize: queueSize) }
        let lag = Int(usedIndex &- area.usedIndex)
        if lag > 0 {
            guard lag <= queueSize else { throw .batchTooLong(lag) }
            var seen = [Bool](repeating: false, count: queueSize)
            var head = area.lastBatchHead
            for step in 0..<lag {
                guard Int(head) < queueSize, !seen[Int(head)] else { throw .batchLink(head) }
                seen[Int(head)] = true
                area.setFlag(Int(head), 0)
                if step + 1 < lag { head = area.next(Int(head)) }
            }
            area.usedIndex = usedIndex
        }
        var inFlight: [(counter: UInt64, head: UInt16)] = []
        for i in 0..<queueSize {
            let flag = area.flag(i)
            guard flag <= 1 else { throw .flag(index: i, value: flag) }
            if flag == 1 { inFlight.append((area.counter(i), UInt16(i))) }
        }
        inFlight.sort { $0.counter < $1.counter }
        for k in inFlight.indices.dropFirst() where inFlight[k].counter == inFlight[k - 1].counter {
            throw .counter(index: Int(inFlight[k].head), value: inFlight[k].counter)
        }
        var next: UInt64 = 0
        if let last = inFlight.last {
            guard last.counter < UInt64.max else { throw .counter(index: Int(last.head), value: last.counter) }
            next = last.counter + 1
        }
        return InflightSplitRecovery(resubmit: inFlight.map(\.head), nextCounter: next,
                                     nextAvail: usedIndex &+ UInt16(truncatingIfNeeded: inFlight.count))
    }
}
