extension PackedDeviceQueue {
    /// Returns `chain` to the driver with `length` bytes written into its device-writable
    /// part: writes a used descriptor (id, len, WRITE when the chain has a writable part, AVAIL
    /// and USED equal to the device's wrap counter) in one release store at the next used
    /// slot, then moves past as many slots as the list took (PKD-DEF-04..06).
    ///
    /// With IN_ORDER, consecutive completions are batched into one used descriptor carrying the
    /// last buffer's id at the batch's first slot (PKD-DEF-08), as long as every buffer but the
    /// last was fully used (the driver counts skipped buffers as fully used); the batch is
    /// written by the next completion that cannot join it or by ``publishUsed()``.
    ///
    /// A chain popped before a reset, or any chain after the queue broke, is dropped silently.
    ///
    /// - Precondition: `chain` is in flight on this queue and `length` does not exceed its
    ///   writable length.
    @inlinable @inline(__always)
    public mutating func addUsed(_ chain: DescriptorChain, length: UInt32) {
        let id = chain.head
        let entry = inFlight[id]
        if _slowPath(UInt32(truncatingIfNeeded: entry) != Self.inFlightTag(chain.epoch)) {
            guard chain.epoch == epoch else { return }
            preconditionFailure("chain completed twice")
        }
        precondition(UInt64(length) <= chain.writableLength, "used length exceeds the chain's writable length")
        if _slowPath(chain.segmentTotal > UnsafeSegmentArena.blockSize) {
            releaseOverflow(after: id, count: (chain.segmentCount &- 1) / UnsafeSegmentArena.blockSize)
        }
        inFlight[id] = 0
        let slots = Self.slots(entry)
        let wrote = chain.writableLength > 0
        if _slowPath(inOrderEnabled) {
            let full = UInt64(length) == chain.writableLength
            if var batch = pendingUsed, batch.full {
                batch.id = UInt16(truncatingIfNeeded: id)
                batch.length = length
                batch.wrote = wrote
                batch.full = full
                pendingUsed = batch
            } else {
                writePendingUsed()
                pendingUsed = PendingUsed(position: usedPosition, id: UInt16(truncatingIfNeeded: id), length: length,
                                          wrote: wrote, full: full)
            }
        } else {
            let position = usedPosition
            let word = UnsafePackedDescriptorRing.usedWord(id: UInt16(truncatingIfNeeded: id), length: length,
                                                           flags: Self.usedFlags(position.wrapCounter, wrote: wrote))
            // GHT-PKD-11: the batch's first used descriptor is held back and written last, by
            // publishUsed; the later ones go to the ring now, and the driver, which reads used
            // descriptors in ring order, cannot reach them before the first.
            if heldUsedSlot < 0 {
                heldUsedSlot = position.slot
                heldUsedWord = word
            } else {
                ring.descriptorRing.storeUsedWord(position.slot, word, publishing: false)
            }
        }
        // The common list took one slot: a predicted branch rather than a wait for the load.
        if _fastPath(slots == 1) {
            usedPosition = usedPosition.advanced(by: 1, count: count)
        } else {
            usedPosition = usedPosition.advanced(by: slots, count: count)
        }
        // After any write above: that write made earlier chains visible, not this one.
        if _slowPath(inflightTracker != nil) { inflightTracker!.used(id: UInt16(truncatingIfNeeded: id)) }
    }

    @inlinable @inline(__always)
    static func usedFlags(_ wrapCounter: Bool, wrote: Bool) -> PackedDescriptorFlags {
        PackedDescriptorFlags(rawValue: PackedDescriptorFlags.used(wrapCounter: wrapCounter).rawValue
                                        | (wrote ? PackedDescriptorFlags.write.rawValue : 0))
    }

    /// Writes the IN_ORDER batch, if any.
    @inlinable
    mutating func writePendingUsed() {
        guard let batch = pendingUsed else { return }
        pendingUsed = nil
        if _slowPath(inflightTracker != nil) { inflightTracker!.prepare(usedPosition: usedPosition) }
        ring.descriptorRing.storeUsed(batch.position.slot, id: batch.id, length: batch.length,
                                      flags: Self.usedFlags(batch.position.wrapCounter, wrote: batch.wrote))
        if _slowPath(inflightTracker != nil) { inflightTracker!.commit() }
    }

    /// Makes every completion added since the last call visible: writes the batch's first used
    /// descriptor, held back by ``addUsed(_:length:)``, with one release store after every
    /// later one (GHT-PKD-11), or the pending IN_ORDER batch (PKD-DEF-08).
    @inlinable
    public mutating func publishUsed() {
        guard !broken else { return }
        writeHeldUsed()
        if _slowPath(inOrderEnabled) { writePendingUsed() }
    }

    /// Writes the used descriptor held back as its batch's first, if any (GHT-PKD-11).
    @inlinable @inline(__always)
    mutating func writeHeldUsed() {
        if heldUsedSlot >= 0 {
            // GHT-INF-11: the area's current fields before the write that shows the batch, its
            // commit after; the held slot is the batch's first, where a recovery looks.
            if _slowPath(inflightTracker != nil) { inflightTracker!.prepare(usedPosition: usedPosition) }
            ring.descriptorRing.storeUsedWord(heldUsedSlot, heldUsedWord, publishing: true)
            heldUsedSlot = -1
            if _slowPath(inflightTracker != nil) { inflightTracker!.commit() }
        }
    }

    /// Whether the driver wants a used-buffer notification for what was used since the last
    /// call: a full barrier, then the driver's event-suppression area (VIRTIO 1.2 §2.8.10,
    /// PKD-EVT-01). DESC without EVENT_IDX is invalid (PKD-EVT-02) and read as ENABLE.
    /// A used descriptor held back for ``publishUsed()`` is written first: a notification is
    /// never for completions the driver cannot see yet (GHT-PKD-11).
    @inlinable
    public mutating func needsNotification() -> Bool {
        guard !broken else { return false }
        writeHeldUsed()
        virtioFullBarrier()
        let moved = usedPosition.distance(from: signalledPosition, count: count)
        signalledPosition = usedPosition
        var mode = ring.driverEventArea.mode
        if !eventIndexEnabled, case .descriptor = mode { mode = .enable }
        return mode.needsNotification(new: usedPosition, moved: moved, count: count)
    }

    /// Asks the driver not to kick (RING_EVENT_FLAGS_DISABLE in the device area).
    @inlinable
    public mutating func disableNotifications() {
        ring.deviceEventArea.mode = .disable
    }

    /// Asks the driver to kick for the next list it makes available — with EVENT_IDX for the
    /// slot at the device's position, otherwise for any — then re-checks that slot to close the
    /// race with a list published meanwhile.
    ///
    /// - Returns: `true` when a list is already available (process it instead of sleeping).
    @inlinable
    public mutating func enableNotifications() -> Bool {
        ring.deviceEventArea.mode = eventIndexEnabled ? .descriptor(availPosition) : .enable
        virtioFullBarrier()
        return hasAvailable
    }
}
