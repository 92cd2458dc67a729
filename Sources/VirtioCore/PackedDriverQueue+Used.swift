extension PackedDriverQueue {
    /// Takes the next used buffer back, after checking the used descriptor at the driver's
    /// position: the id must be below N and outstanding, and when WRITE is set the length may
    /// not exceed the buffer's writable capacity (when WRITE is clear the length is reserved
    /// and read as 0, PKD-DEF-05). Any violation breaks the queue. With IN_ORDER the buffers
    /// made available before the named one come back first, as fully used (PKD-DEF-08).
    ///
    /// - Returns: the buffer's token and written length, or `nil` when nothing new was used.
    @inlinable @inline(__always)
    public mutating func reapUsed() throws(DriverQueueError) -> UsedBuffer? {
        // One test for both unusual states: broken, or an IN_ORDER batch being retired.
        if _slowPath(unusual) {
            if broken { throw brokenBy! }
            return retireInOrder(batchEnd!)
        }
        // Nothing outstanding: the slot is not read at all, whatever the device wrote there.
        guard freeIdCount < count else { return nil }
        let position = usedPosition
        let word1 = ring.descriptorRing.loadWord1(position.slot)
        let flags = PackedDescriptorFlags(rawValue: UInt16(truncatingIfNeeded: word1 &>> 48))
        guard flags.isUsed(wrapCounter: position.wrapCounter) else { return nil }
        let id = UInt16(truncatingIfNeeded: word1 &>> 32)
        let wrote = flags.contains(.write)
        let length = wrote ? UInt32(truncatingIfNeeded: word1) : 0
        guard Int(id) < count else { throw fail(.usedIdOutOfRange(UInt32(id))) }
        let record = records[Int(id)]
        guard record.isOutstanding else { throw fail(.usedIdNotOutstanding(UInt32(id))) }
        guard length <= record.capacity else {
            throw fail(.usedLengthExceedsBuffer(id: UInt32(id), length: length, capacity: UInt64(record.capacity)))
        }
        if _slowPath(inOrderEnabled) { return retireInOrder((Int(id), length)) }
        retire(Int(id), record)
        return UsedBuffer(token: record.token, writtenLength: length)
    }

    /// Takes back every buffer used now, calling `body` for each in the order they come back.
    ///
    /// - Returns: the number of buffers taken back.
    @inlinable
    @discardableResult
    public mutating func reapAllUsed(_ body: (UsedBuffer) -> Void) throws(DriverQueueError) -> Int {
        var reaped = 0
        while let used = try reapUsed() {
            body(used)
            reaped &+= 1
        }
        return reaped
    }

    /// IN_ORDER: retires the oldest outstanding buffer, which is `end.id` (reported with its
    /// length) or one made available before it (fully used).
    @inlinable
    mutating func retireInOrder(_ end: (id: Int, length: UInt32)) -> UsedBuffer {
        let id = Int(order[orderStart])
        orderStart = orderStart &+ 1 == count ? 0 : orderStart &+ 1
        orderCount &-= 1
        let record = records[id]
        batchEnd = id == end.id ? nil : end
        retire(id, record)
        return UsedBuffer(token: record.token, writtenLength: id == end.id ? end.length : record.capacity)
    }

    /// Frees buffer `id` and its slots, moving the used position past its list.
    @inlinable @inline(__always)
    mutating func retire(_ id: Int, _ record: ChainRecord) {
        records[id].packed = ChainRecord.freeWord
        freeIds[freeIdCount] = UInt16(truncatingIfNeeded: id)
        freeIdCount &+= 1
        let slots = Int(record.descriptorCount)
        freeSlots &+= slots
        if _slowPath(record.table != ChainRecord.noTable) { indirectTables!.give(Int(record.table)) }
        usedPosition = usedPosition.advanced(by: slots, count: count)
        if _slowPath(tracksUsedEvent) { ring.driverEventArea.mode = .descriptor(usedPosition) }
    }

    /// Asks the device not to send used-buffer notifications (RING_EVENT_FLAGS_DISABLE).
    @inlinable
    public mutating func disableUsedNotifications() {
        tracksUsedEvent = false
        ring.driverEventArea.mode = .disable
    }

    /// Asks for a notification when the next buffer is used — with EVENT_IDX for the slot at
    /// the driver's used position (kept current by every reap), otherwise for any — then
    /// re-checks that slot to close the race with a completion that landed meanwhile.
    ///
    /// - Returns: `true` when used buffers are already waiting (reap them instead of sleeping).
    @inlinable
    public mutating func enableUsedNotifications() -> Bool {
        tracksUsedEvent = eventIndexEnabled
        ring.driverEventArea.mode = eventIndexEnabled ? .descriptor(usedPosition) : .enable
        virtioFullBarrier()
        if batchEnd != nil { return true }
        guard freeIdCount < count else { return false }
        let word1 = ring.descriptorRing.loadWord1(usedPosition.slot)
        return PackedDescriptorFlags(rawValue: UInt16(truncatingIfNeeded: word1 &>> 48)).isUsed(wrapCounter: usedPosition.wrapCounter)
    }
}
