extension SplitDriverQueue {
    /// Exposes a chain of device-readable then device-writable buffers (FRM-DRV-01 holds by
    /// construction) and writes its head into the available ring, without publishing it.
    ///
    /// Call ``publish()`` once per batch, then ``kickNeeded()``.
    ///
    /// - Parameters:
    ///   - readable: buffers the device reads, in order.
    ///   - writable: buffers the device writes, in order.
    ///   - token: the caller's value, returned by ``reapUsed()``.
    ///   - layout: direct or indirect placement.
    /// - Returns: the head descriptor index.
    @inlinable @inline(__always)
    @discardableResult
    public mutating func add(readable: Span<BufferSegment>, writable: Span<BufferSegment>, token: UInt64,
                             layout chainLayout: ChainLayout = .automatic) throws(DriverQueueError) -> UInt16 {
        if _slowPath(broken) { throw brokenBy! }
        let total = readable.count &+ writable.count
        guard total > 0 else { throw .emptyChain }
        guard total <= layout.count else { throw .chainTooLong(segments: total, limit: layout.count) }  // IND-DRV-03
        let useIndirect: Bool
        switch chainLayout {
        case .direct:
            useIndirect = false
        case .automatic:
            useIndirect = total > 1 && indirectTables != nil && indirectTables.unsafelyUnwrapped.availableCount > 0
                && total <= indirectTables.unsafelyUnwrapped.entriesPerTable
        case .indirect:
            guard let pool = indirectTables else { throw .indirectUnavailable }
            guard total <= pool.entriesPerTable else { throw .chainTooLong(segments: total, limit: pool.entriesPerTable) }
            guard pool.availableCount > 0 else { throw .queueFull }
            useIndirect = true
        }
        let needed = useIndirect ? 1 : total
        guard freeDescriptorCount >= needed else { throw .queueFull }

        // Descriptors are written before anything is committed: slots that are free are not
        // visible to the device, so a chain rejected below leaves nothing behind.
        let head = freeRing[freeTake & mask]
        if total == 1 && !useIndirect {
            // The common request: one buffer, one descriptor, nothing to link.
            let isWritable = readable.isEmpty
            let seg = isWritable ? writable[0] : readable[0]
            // The free ring holds only valid indices, and the table's alignment was checked at setup.
            ring.descriptorTable.storeValidated(Descriptor(address: seg.address, length: seg.length,
                                                           flags: isWritable ? .write : [], next: 0), at: Int(head))
            freeTake &+= 1
            records[Int(head)] = ChainRecord(token: token, capacity: isWritable ? seg.length : 0, descriptorCount: 1, table: Self.noTable)
        } else {
            let readableCount = readable.count
            var writableBytes: UInt64 = 0
            var totalBytes: UInt64 = 0
            // Direct chains link free descriptors in the order the free ring yields them;
            // indirect chains fill table entries 0..<total, linked i -> i + 1 (IND-DRV-05).
            let table = useIndirect ? indirectTables.unsafelyUnwrapped.peek() : 0
            let target = useIndirect ? indirectTables.unsafelyUnwrapped.table(table) : ring.descriptorTable
            var position = freeTake
            var index = useIndirect ? 0 : head
            for i in 0..<total {
                let isWritable = i >= readableCount
                let seg = isWritable ? writable[i &- readableCount] : readable[i]
                let last = i &+ 1 == total
                let next: UInt16
                if useIndirect {
                    next = UInt16(truncatingIfNeeded: i &+ 1)
                } else {
                    position &+= 1
                    next = last ? 0 : freeRing[position & mask]
                    links[Int(index)] = next
                }
                var flags: DescriptorFlags = isWritable ? .write : []
                if !last { flags.insert(.next) }
                target.store(Descriptor(address: seg.address, length: seg.length, flags: flags, next: next), at: Int(index))
                totalBytes &+= UInt64(seg.length)
                if isWritable { writableBytes &+= UInt64(seg.length) }
                index = next
            }
            guard totalBytes <= 1 << 32 else { throw .totalLengthOverflow }   // SPL-DRV-02
            if useIndirect {
                _ = indirectTables!.take()
                ring.descriptorTable.store(Descriptor(address: indirectTables.unsafelyUnwrapped.address(table),
                                                      length: UInt32(total &* Descriptor.size), flags: .indirect), at: Int(head))
                freeTake &+= 1
            } else {
                freeTake = position
            }
            records[Int(head)] = ChainRecord(token: token, capacity: UInt32(clamping: writableBytes),
                                             descriptorCount: useIndirect ? 1 : UInt16(truncatingIfNeeded: total),
                                             table: useIndirect ? UInt16(truncatingIfNeeded: table) : Self.noTable)
        }
        ring.availRing.setEntry(wrapping: availIndex, head)
        availIndex &+= 1
        return head
    }

    /// Exposes a chain given as arrays (convenience over the `Span` form).
    @discardableResult
    public mutating func add(readable: [BufferSegment], writable: [BufferSegment], token: UInt64,
                             layout chainLayout: ChainLayout = .automatic) throws(DriverQueueError) -> UInt16 {
        try add(readable: readable.span, writable: writable.span, token: token, layout: chainLayout)
    }

    /// Publishes every chain added so far with one release store of `avail.idx`: descriptors
    /// and ring entries are visible to the device before the index (SUP-DRV-01).
    @inlinable
    public mutating func publish() {
        ring.availRing.storeIndex(availIndex)
    }

    /// Whether the device wants an available-buffer notification for what was published since
    /// the last call (VIRTIO 1.2 §2.7.10).
    ///
    /// A full barrier separates the published index from the read of the device's suppression
    /// state (SUP-DRV-03). With EVENT_IDX the formula runs on `avail_event` (ANS-DRV-03);
    /// without it the driver kicks unless `used.flags` has NO_NOTIFY (ANS-DRV-02).
    @inlinable
    public mutating func kickNeeded() -> Bool {
        virtioFullBarrier()
        let old = kickedAvail
        kickedAvail = availIndex
        if eventIndexEnabled {
            return EventIndex.needsNotification(event: ring.usedRing.availEvent, new: availIndex, old: old)
        }
        return old != availIndex && ring.usedRing.flags & UnsafeUsedRing.noNotify == 0
    }
}
