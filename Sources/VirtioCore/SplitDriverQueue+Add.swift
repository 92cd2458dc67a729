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
        let total = readable.count &+ writable.count
        // An empty chain, one longer than the queue (IND-DRV-03) and a broken queue in one
        // unsigned compare: addLimit is N, or 0 once the queue is broken.
        guard UInt(bitPattern: total &- 1) < UInt(bitPattern: addLimit) else { throw addRejection(total: total) }
        // The available ring (base and mask) is read once, before the atomic stores below.
        let availRing = ring.availRing
        let head: UInt16
        if _fastPath(total == 1 && chainLayout != .indirect) {
            // The common request: one buffer, one descriptor, nothing to link.
            guard freeEnd != freeTake else { throw .queueFull }
            head = freeRing[freeTake & availRing.mask]
            let isWritable = readable.isEmpty
            let seg = isWritable ? writable[0] : readable[0]
            // The free ring holds only valid indices, and the table's alignment was checked at setup.
            ring.descriptorTable.storeValidated(Descriptor(address: seg.address, length: seg.length,
                                                           flags: isWritable ? .write : [], next: 0), at: Int(head))
            freeTake &+= 1
            setRecord(ChainRecord(token: token, capacity: isWritable ? seg.length : 0, descriptorCount: 1, table: Self.noTable), Int(head))
        } else if try useIndirect(total: total, layout: chainLayout) {
            head = try addIndirect(readable: readable, writable: writable, token: token)
        } else {
            head = try addLinked(readable: readable, writable: writable, token: token)
        }
        // The index is read and advanced before the (atomic) entry store, which would make the
        // compiler load it again.
        let position = availIndexWord
        availIndexWord = position &+ 1
        availRing.setEntry(position: Int(position), head)
        return head
    }

    /// Why a chain of `total` segments is refused before anything is placed.
    @inlinable
    func addRejection(total: Int) -> DriverQueueError {
        if broken { return brokenBy! }
        return total == 0 ? .emptyChain : .chainTooLong(segments: total, limit: layout.count)
    }

    /// Whether a chain of `total` (at least 2 for `.automatic`) segments goes through an
    /// indirect table; throws when `.indirect` was asked for and cannot be had.
    @inlinable @inline(__always)
    func useIndirect(total: Int, layout chainLayout: ChainLayout) throws(DriverQueueError) -> Bool {
        try chainLayout.placesIndirect(total: total, pool: indirectTables)
    }

    /// Places a direct chain of 1...N segments: descriptors linked in the order the free ring
    /// yields them (FIFO reuse), readable ones first. Returns the head; the caller writes the
    /// available-ring entry.
    @inlinable @inline(__always)
    mutating func addLinked(readable: Span<BufferSegment>, writable: Span<BufferSegment>,
                            token: UInt64) throws(DriverQueueError) -> UInt16 {
        let total = readable.count &+ writable.count
        guard freeEnd &- freeTake >= total else { throw .queueFull }
        // Descriptors are written before anything is committed: slots that are free are not
        // visible to the device, so a chain rejected below leaves nothing behind.
        let head = freeRing[freeTake & mask]
        var link = ChainLink(index: head, position: freeTake, last: freeTake &+ total &- 1)
        var readableBytes: UInt64 = 0
        for i in readable.indices {
            let seg = readable[i]
            readableBytes &+= UInt64(seg.length)
            write(seg, flags: [], link: &link)
        }
        var writableBytes: UInt64 = 0
        for i in writable.indices {
            let seg = writable[i]
            writableBytes &+= UInt64(seg.length)
            write(seg, flags: .write, link: &link)
        }
        // At most N segments of less than 2^32 bytes: the sums cannot overflow.
        guard readableBytes &+ writableBytes <= 1 << 32 else { throw .totalLengthOverflow }   // SPL-DRV-02
        freeTake &+= total
        setRecord(ChainRecord(token: token, capacity: UInt32(clamping: writableBytes),
                              descriptorCount: UInt16(truncatingIfNeeded: total), table: Self.noTable), Int(head))
        return head
    }

    /// Writes `seg` into the descriptor `link` is at and moves `link` to the next free
    /// descriptor, unless this is the chain's last one. The driver records each link privately
    /// (`links`) so that taking the chain back never reads the shared table.
    @inlinable @inline(__always)
    func write(_ seg: BufferSegment, flags: DescriptorFlags, link: inout ChainLink) {
        // Free-ring entries are valid indices and the table's alignment was checked at setup.
        if link.position == link.last {
            ring.descriptorTable.storeValidated(Descriptor(address: seg.address, length: seg.length, flags: flags, next: 0),
                                                at: Int(link.index))
            return
        }
        link.position &+= 1
        let next = freeRing[link.position & mask]
        links[Int(link.index)] = next
        ring.descriptorTable.storeValidated(Descriptor(address: seg.address, length: seg.length,
                                                       flags: DescriptorFlags(rawValue: flags.rawValue | DescriptorFlags.next.rawValue),
                                                       next: next), at: Int(link.index))
        link.index = next
    }

    /// Places a chain in a free indirect table (entries 0..<total, linked i -> i + 1,
    /// IND-DRV-05) and points one descriptor at it. Returns the head.
    @inlinable
    mutating func addIndirect(readable: Span<BufferSegment>, writable: Span<BufferSegment>,
                              token: UInt64) throws(DriverQueueError) -> UInt16 {
        let total = readable.count &+ writable.count
        guard freeEnd != freeTake else { throw .queueFull }
        let head = freeRing[freeTake & mask]
        let readableCount = readable.count
        var writableBytes: UInt64 = 0
        var totalBytes: UInt64 = 0
        let table = indirectTables.unsafelyUnwrapped.peek()
        let target = indirectTables.unsafelyUnwrapped.table(table)
        for i in 0..<total {
            let isWritable = i >= readableCount
            let seg = isWritable ? writable[i &- readableCount] : readable[i]
            let last = i &+ 1 == total
            var flags: DescriptorFlags = isWritable ? .write : []
            if !last { flags.insert(.next) }
            target.store(Descriptor(address: seg.address, length: seg.length, flags: flags,
                                    next: last ? 0 : UInt16(truncatingIfNeeded: i &+ 1)), at: i)
            totalBytes &+= UInt64(seg.length)
            if isWritable { writableBytes &+= UInt64(seg.length) }
        }
        guard totalBytes <= 1 << 32 else { throw .totalLengthOverflow }   // SPL-DRV-02
        _ = indirectTables!.take()
        ring.descriptorTable.store(Descriptor(address: indirectTables.unsafelyUnwrapped.address(table),
                                              length: UInt32(total &* Descriptor.size), flags: .indirect), at: Int(head))
        freeTake &+= 1
        setRecord(ChainRecord(token: token, capacity: UInt32(clamping: writableBytes), descriptorCount: 1,
                              table: UInt16(truncatingIfNeeded: table)), Int(head))
        return head
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

/// The driver's position while it links a direct chain: the descriptor being written, the
/// free-ring position it came from, and the position of the chain's last descriptor.
@frozen @usableFromInline
struct ChainLink {
    @usableFromInline var index: UInt16
    @usableFromInline var position: Int
    @usableFromInline let last: Int

    @inlinable
    init(index: UInt16, position: Int, last: Int) {
        self.index = index
        self.position = position
        self.last = last
    }
}
