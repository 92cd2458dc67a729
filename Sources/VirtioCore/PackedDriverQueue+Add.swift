extension PackedDriverQueue {
    /// Makes a list of device-readable then device-writable buffers available (PKD-DRV-05 by
    /// construction): its later descriptors first, then the first one's flags with release
    /// ordering (PKD-DRV-07, PKD-SUP-01). Every descriptor carries the buffer id and the
    /// AVAIL/USED bits of its own lap (PKD-DEF-06).
    ///
    /// - Parameters:
    ///   - readable: buffers the device reads, in order.
    ///   - writable: buffers the device writes, in order.
    ///   - token: the caller's value, returned by ``reapUsed()``.
    ///   - layout: direct or indirect placement (indirect needs INDIRECT_DESC, PKD-IND-01).
    /// - Returns: the buffer id.
    /// - Throws: ``DriverQueueError/queueFull`` when the ring has no room for the whole list
    ///   or no id is free (nothing is placed: PKD-DRV-06).
    @inlinable @inline(__always)
    @discardableResult
    public mutating func add(readable: Span<BufferSegment>, writable: Span<BufferSegment>, token: UInt64,
                             layout chainLayout: ChainLayout = .automatic) throws(DriverQueueError) -> UInt16 {
        if _slowPath(broken) { throw brokenBy! }
        if _fastPath(readable.count &+ writable.count == 1 && chainLayout != .indirect) {
            return try addOne(readable: readable, writable: writable, token: token)
        }
        return try addList(readable: readable, writable: writable, token: token, layout: chainLayout)
    }

    /// A list of several descriptors, or an indirect one, or a mistake.
    @inlinable
    mutating func addList(readable: Span<BufferSegment>, writable: Span<BufferSegment>, token: UInt64,
                          layout chainLayout: ChainLayout) throws(DriverQueueError) -> UInt16 {
        let total = readable.count &+ writable.count
        guard total > 0 else { throw .emptyChain }
        guard total <= count else { throw .chainTooLong(segments: total, limit: count) }   // PKD-DRV-04
        // Lengths are checked before anything is written: a slot written and then abandoned
        // would look available to the device once its position comes (PKD-DEV-03).
        var totalBytes: UInt64 = 0
        var writableBytes: UInt64 = 0
        for i in readable.indices { totalBytes &+= UInt64(readable[i].length) }
        for i in writable.indices { writableBytes &+= UInt64(writable[i].length) }
        totalBytes &+= writableBytes
        guard totalBytes <= 1 << 32 else { throw .totalLengthOverflow }
        var indirect = false
        // The pool is looked at only when there is one (copying the optional costs a retain).
        if total > 1 && (hasIndirectTables || chainLayout == .indirect) { indirect = try useIndirect(total: total, layout: chainLayout) }
        let slots = indirect ? 1 : total
        guard freeIdCount > 0, freeSlots >= slots else { throw .queueFull }
        freeIdCount &-= 1
        let id = freeIds[freeIdCount]
        let head = availPosition
        var table = ChainRecord.noTable
        if indirect {
            table = UInt16(truncatingIfNeeded: writeIndirect(readable: readable, writable: writable))
            let pool = indirectTables.unsafelyUnwrapped
            ring.descriptorRing.store(PackedDescriptor(address: pool.address(Int(table)), length: UInt32(total &* 16), id: id,
                                                       flags: [.indirect, .available(wrapCounter: head.wrapCounter)]),
                                      at: head.slot, publishing: true)
        } else {
            // The later descriptors, then the first: its flags store publishes the list.
            var position = head
            for i in 1..<max(total, 1) {
                position = position.advanced(by: 1, count: count)
                store(i, of: readable, writable, id: id, at: position, last: i == total &- 1)
            }
            store(0, of: readable, writable, id: id, at: head, last: total == 1)
        }
        records[Int(id)] = ChainRecord(token: token, capacity: UInt32(clamping: writableBytes),
                                       descriptorCount: UInt16(truncatingIfNeeded: slots), table: table)
        if inOrderEnabled {
            order[(orderStart &+ orderCount) % count] = id
            orderCount &+= 1
        }
        freeSlots &-= slots
        availPosition = head.advanced(by: slots, count: count)
        return id
    }

    /// The common request: one buffer, one slot, nothing to sum or link.
    @inlinable @inline(__always)
    mutating func addOne(readable: Span<BufferSegment>, writable: Span<BufferSegment>, token: UInt64) throws(DriverQueueError) -> UInt16 {
        guard freeIdCount > 0, freeSlots > 0 else { throw .queueFull }
        freeIdCount &-= 1
        let id = freeIds[freeIdCount]
        let head = availPosition
        let isWritable = readable.isEmpty
        let seg = isWritable ? writable[0] : readable[0]
        ring.descriptorRing.store(PackedDescriptor(address: seg.address, length: seg.length, id: id,
                                                   flags: isWritable ? [.write, .available(wrapCounter: head.wrapCounter)]
                                                                     : .available(wrapCounter: head.wrapCounter)),
                                  at: head.slot, publishing: true)
        records[Int(id)] = ChainRecord(token: token, capacity: isWritable ? seg.length : 0, descriptorCount: 1, table: ChainRecord.noTable)
        if _slowPath(inOrderEnabled) {
            order[(orderStart &+ orderCount) % count] = id
            orderCount &+= 1
        }
        freeSlots &-= 1
        availPosition = head.advanced(by: 1, count: count)
        return id
    }

    /// Writes segment `i` of the list (readable ones first) into the ring at `position`; the
    /// first segment's store is the one that publishes.
    @inlinable @inline(__always)
    func store(_ i: Int, of readable: Span<BufferSegment>, _ writable: Span<BufferSegment>, id: UInt16,
               at position: PackedRingPosition, last: Bool) {
        let isWritable = i >= readable.count
        let seg = isWritable ? writable[i &- readable.count] : readable[i]
        var flags = PackedDescriptorFlags.available(wrapCounter: position.wrapCounter)
        if isWritable { flags.insert(.write) }
        if !last { flags.insert(.next) }
        ring.descriptorRing.store(PackedDescriptor(address: seg.address, length: seg.length, id: id, flags: flags),
                                  at: position.slot, publishing: i == 0)
    }

    /// Whether a list of `total` (at least 2) segments goes through an indirect table.
    @inlinable @inline(__always)
    func useIndirect(total: Int, layout chainLayout: ChainLayout) throws(DriverQueueError) -> Bool {
        try chainLayout.placesIndirect(total: total, pool: indirectTables)
    }

    /// Fills a free indirect table with the list (consecutive entries, WRITE the only flag:
    /// PKD-DEF-07) and returns its index.
    @inlinable
    mutating func writeIndirect(readable: Span<BufferSegment>, writable: Span<BufferSegment>) -> Int {
        let table = indirectTables!.take()!
        let target = indirectTables.unsafelyUnwrapped.table(table)
        for i in readable.indices {
            target.storePacked(PackedDescriptor(address: readable[i].address, length: readable[i].length, id: 0, flags: []), at: i)
        }
        for i in writable.indices {
            target.storePacked(PackedDescriptor(address: writable[i].address, length: writable[i].length, id: 0, flags: .write),
                               at: readable.count &+ i)
        }
        return table
    }

    /// Nothing to do: each list is published by its own flags store. Kept so that code written
    /// for either ring format reads the same.
    @inlinable
    public mutating func publish() {}

    /// Whether the device wants an available-buffer notification for what was made available
    /// since the last call: a full barrier, then the device's event-suppression area
    /// (PKD-SUP-03, PKD-EVT-01). DESC without EVENT_IDX is invalid (PKD-EVT-02) and read as
    /// ENABLE.
    @inlinable
    public mutating func kickNeeded() -> Bool {
        virtioFullBarrier()
        let moved = availPosition.distance(from: kickedPosition, count: count)
        kickedPosition = availPosition
        var mode = ring.deviceEventArea.mode
        if !eventIndexEnabled, case .descriptor = mode { mode = .enable }
        return mode.needsNotification(new: availPosition, moved: moved, count: count)
    }
}
