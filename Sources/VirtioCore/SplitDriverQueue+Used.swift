extension SplitDriverQueue {
    /// Takes the next used chain back, after checking what the device wrote: the used index
    /// may not run past the outstanding chains, the id must be the head of an outstanding
    /// chain, and the length may not exceed the chain's writable capacity. Any violation
    /// breaks the queue (USD-DEF-02, Spec/transport.md §5).
    ///
    /// - Returns: the chain's token and written length, or `nil` when nothing new was used.
    @inlinable @inline(__always)
    public mutating func reapUsed() throws(DriverQueueError) -> UsedBuffer? {
        // The ring view is read once and handed down (see SplitDeviceQueue.popAvailable).
        let usedRing = ring.usedRing
        var cursor = usedCursor
        if cursor.isCaughtUp {
            guard try refillUsed(usedRing, &cursor) else { return nil }
        }
        return try reapCached(usedRing, cursor)
    }

    /// Takes back every chain used now, calling `body` for each in used-ring order: reads
    /// `used.idx` once (one acquire for the whole batch) and checks each element as
    /// ``reapUsed()`` does.
    ///
    /// - Returns: the number of chains taken back.
    @inlinable @inline(__always)
    @discardableResult
    public mutating func reapAllUsed(_ body: (UsedBuffer) -> Void) throws(DriverQueueError) -> Int {
        let usedRing = ring.usedRing
        var cursor = usedCursor
        if cursor.isCaughtUp {
            guard try refillUsed(usedRing, &cursor) else { return 0 }
        }
        var reaped = 0
        while !cursor.isCaughtUp {
            body(try reapCached(usedRing, cursor))
            reaped &+= 1
            cursor = usedCursor
        }
        return reaped
    }

    /// Reads `used.idx` (acquire) and checks it does not run past the outstanding chains,
    /// updating `cursor` (the caller reaps next, which stores it). A broken queue (its cursor
    /// closed: caught up, limit 0) rethrows its error here.
    @inlinable @inline(__always)
    mutating func refillUsed(_ usedRing: UnsafeUsedRing, _ cursor: inout RingCursor) throws(DriverQueueError) -> Bool {
        let index = usedRing.loadIndex()
        if index == cursor.next {
            if _slowPath(cursor.limit == 0) { throw brokenBy! }
            return false
        }
        // The limit is 0 once the queue is broken, so the first test also turns it away.
        guard cursor.limit != 0, index &- cursor.next <= availIndex &- cursor.next else {
            throw refillUsedFailure(index: index)
        }
        // The queue's copy is written by the reap that follows (one store, not two).
        cursor = cursor.reading(index)
        return true
    }

    /// The error for a used index that ran too far, or the queue's own if it is broken.
    @inlinable
    mutating func refillUsedFailure(index: UInt16) -> DriverQueueError {
        if broken { return brokenBy! }
        return fail(.usedIndexTooFarAhead(usedIndex: index, lastSeen: lastUsed, outstanding: outstandingCount))
    }

    /// Takes back the chain named by the used element at `cursor.next`, which is known to be
    /// before `cursor.end`.
    @inlinable @inline(__always)
    mutating func reapCached(_ usedRing: UnsafeUsedRing, _ cursor: RingCursor) throws(DriverQueueError) -> UsedBuffer {
        // The ring's mask (N - 1) serves both the slot and the range check (id < N).
        let element = usedRing.element(wrapping: cursor.next)
        guard element.id & ~UInt32(truncatingIfNeeded: usedRing.mask) == 0 else { throw fail(.usedIdOutOfRange(element.id)) }
        let head = Int(element.id)
        let record = record(head)
        guard record.isOutstanding else { throw fail(.usedIdNotOutstanding(element.id)) }
        guard element.length <= record.capacity else {
            throw fail(.usedLengthExceedsBuffer(id: element.id, length: element.length, capacity: UInt64(record.capacity)))
        }
        detach(head: head, record: record, mask: usedRing.mask)
        let advanced = cursor.advanced()
        usedCursor = advanced
        if advanced.flags & Self.tracksUsedEventFlag != 0 { ring.availRing.usedEvent = advanced.next }
        return UsedBuffer(token: record.token, writtenLength: element.length)
    }

    /// Returns the chain at `head` to the free ring, walking the driver's private links
    /// (never the shared table), and gives back its indirect table.
    @inlinable @inline(__always)
    mutating func detach(head: Int, record: ChainRecord, mask: Int) {
        // Cleared first: the compiler cannot tell that the free-ring store below leaves the
        // queue's own fields alone, and would load the record pointer again.
        records[head].packed = ChainRecord.freeWord
        var index = UInt16(truncatingIfNeeded: head)
        giveDescriptor(index, mask: mask)
        // The common chain, one descriptor and no indirect table, is told by one compare.
        if _fastPath(record.isSingleDirect) { return }
        var left = Int(record.descriptorCount) &- 1
        while left > 0 {
            index = links[Int(index)]
            giveDescriptor(index, mask: mask)
            left &-= 1
        }
        if record.table != Self.noTable { indirectTables!.give(Int(record.table)) }
    }

    /// Takes back every outstanding chain without waiting for the device, returning their
    /// tokens, and rewinds the queue to an empty state. Only legal once the queue is no longer
    /// live: after a device or queue reset has completed (CLN-DRV-02).
    public mutating func detachAllOutstanding() -> [UInt64] {
        var result: [UInt64] = []
        for head in 0..<layout.count {
            let outstanding = record(head)
            guard outstanding.isOutstanding else { continue }
            detach(head: head, record: outstanding, mask: mask)
            result.append(outstanding.token)
        }
        availIndex = 0
        kickedAvail = 0
        usedCursor = RingCursor(position: 0, limit: usedCursor.limit).flagged(usedCursor.flags)
        ring.zero()
        return result
    }

    /// Asks the device not to send used-buffer notifications: NO_INTERRUPT without EVENT_IDX;
    /// with it (where `avail.flags` must stay 0, UNS-DRV-01) `used_event` is set just behind
    /// the current position, a full wrap away.
    @inlinable
    public mutating func disableUsedNotifications() {
        callbacksEnabled = false
        tracksUsedEvent = false
        if eventIndexEnabled {
            ring.availRing.usedEvent = lastUsed &- 1
        } else {
            ring.availRing.flags = UnsafeAvailRing.noInterrupt
        }
    }

    /// Asks for a notification when the next chain is used, then re-checks the used ring to
    /// close the race with a completion that landed meanwhile (RCV-DRV-01).
    ///
    /// - Returns: `true` when used chains are already waiting (reap them instead of sleeping).
    @inlinable
    public mutating func enableUsedNotifications() -> Bool {
        callbacksEnabled = true
        tracksUsedEvent = eventIndexEnabled
        if eventIndexEnabled {
            ring.availRing.usedEvent = lastUsed
        } else {
            ring.availRing.flags = 0
        }
        virtioFullBarrier()
        return ring.usedRing.loadIndex() != lastUsed
    }
}
