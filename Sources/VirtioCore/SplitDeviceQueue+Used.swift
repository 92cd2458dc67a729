extension SplitDeviceQueue {
    /// Returns `chain` to the driver with `length` bytes written into its device-writable
    /// part: writes the used element (id, len) without publishing it (USD-DEF-01).
    ///
    /// Call ``publishUsed()`` once per batch. A chain popped before a reset, or any chain
    /// after the queue broke, is dropped silently: the device must not touch a queue that
    /// needs a reset.
    ///
    /// - Precondition: `chain` is in flight on this queue and `length` does not exceed its
    ///   writable length (these are the embedder's own bugs, not the peer's).
    @inlinable @inline(__always)
    public mutating func addUsed(_ chain: DescriptorChain, length: UInt32) {
        let head = chain.head
        // The head's in-flight tag is the epoch it was popped in (see popCached): one compare
        // with the chain's own tells both checks apart only when it fails.
        if _slowPath(inFlight[head] != SplitDeviceQueue.inFlightTag(chain.epoch)) {
            // A reset or a failure ends the epoch (and clears the tags): its chains are dropped.
            guard chain.epoch == epoch else { return }
            preconditionFailure("chain completed twice")
        }
        precondition(UInt64(length) <= chain.writableLength, "used length exceeds the chain's writable length")
        if _slowPath(chain.segmentTotal > UnsafeSegmentArena.blockSize) {
            releaseOverflow(after: head, count: (chain.segmentCount &- 1) / UnsafeSegmentArena.blockSize)
        }
        inFlight[head] = 0
        if _slowPath(inflightTracker != nil) { inflightTracker!.used(head) }
        ring.usedRing.setElement(wrapping: usedIndex, UsedElement(id: UInt32(truncatingIfNeeded: head), length: length))
        usedIndex &+= 1
    }

    /// Publishes every used element added so far with one release store of `used.idx`
    /// (USD-DEV-01: elements are written before the index).
    @inlinable
    public mutating func publishUsed() {
        guard !broken else { return }
        ring.usedRing.storeIndex(usedIndex)
        // GHT-INF-06: the batch's flags are cleared only once its used entries are visible.
        if _slowPath(inflightTracker != nil) { inflightTracker!.published(usedIndex: usedIndex) }
    }

    /// Whether the driver wants a used-buffer notification for what was published since the
    /// last call (VIRTIO 1.2 §2.7.7.2).
    ///
    /// With EVENT_IDX: a full barrier, then `used_event` against the used index moved since
    /// the last notification (UNS-DEV-02). Without it: unless `avail.flags` has NO_INTERRUPT
    /// (UNS-DEV-01). Nothing is ever owed by a broken queue.
    @inlinable
    public mutating func needsNotification() -> Bool {
        guard !broken else { return false }
        virtioFullBarrier()
        let old = signalledUsed
        signalledUsed = usedIndex
        if eventIndexEnabled {
            return EventIndex.needsNotification(event: ring.availRing.usedEvent, new: usedIndex, old: old)
        }
        return old != usedIndex && ring.availRing.flags & UnsafeAvailRing.noInterrupt == 0
    }

    /// Asks the driver not to kick: NO_NOTIFY in `used.flags` without EVENT_IDX; with it,
    /// `avail_event` half the index space ahead of the next available index, which the driver
    /// does not cross before it is moved again (ANS-DEV-01; GHT-ASY-08: a polling worker
    /// calls this every round, so the mark moves with the ring).
    @inlinable
    public mutating func disableNotifications() {
        if eventIndexEnabled {
            ring.usedRing.availEvent = lastAvail &+ 0x8000
        } else {
            ring.usedRing.flags = UnsafeUsedRing.noNotify
        }
    }

    /// Asks the driver to kick for the next chain it makes available, then re-checks the ring
    /// to close the race with a chain published meanwhile (VIRTIO 1.2 §2.7.10).
    ///
    /// - Returns: `true` when chains are already available (process them instead of sleeping).
    @inlinable
    public mutating func enableNotifications() -> Bool {
        if eventIndexEnabled {
            ring.usedRing.availEvent = lastAvail
        } else {
            ring.usedRing.flags = 0
        }
        virtioFullBarrier()
        return ring.availRing.loadIndex() != lastAvail
    }
}
