extension SplitDeviceQueue {
    /// Pops the next available chain, reading each of its descriptors once and validating the
    /// chain as it goes (VIRTIO 1.2 §2.7.5, §2.7.6; Spec/transport.md §4).
    ///
    /// - Returns: the chain, or `nil` when the driver has made nothing new available — or,
    ///   for a device that keeps many long chains in flight, when the segment arena is full
    ///   until some of them complete (``inFlightCount`` is then non-zero).
    /// - Throws: the violation that broke the queue (now or earlier).
    @inlinable @inline(__always)
    public mutating func popAvailable() throws(VirtqueueError) -> DescriptorChain? {
        // The ring view (base and mask) is read once and handed down: a field read after the
        // atomic index load would be read again. Loads, not instructions, bound this path.
        if _slowPath(resubmitRemaining > 0) { return try popResubmitted() }
        let availRing = ring.availRing
        var cursor = availCursor
        if cursor.isCaughtUp {
            guard try refillAvailable(availRing, &cursor) else { return nil }
        }
        return try popCached(availRing, cursor)
    }

    /// Reads `avail.idx` (acquire) and validates how far it moved, updating `cursor` (the
    /// caller pops next, which stores it). Returns whether chains are available; a broken queue
    /// rethrows its error here (its cursor is closed: caught up, limit 0).
    @inlinable @inline(__always)
    mutating func refillAvailable(_ availRing: UnsafeAvailRing, _ cursor: inout RingCursor) throws(VirtqueueError) -> Bool {
        let index = availRing.loadIndex()
        if index == cursor.next {
            if _slowPath(broken) { throw brokenBy! }
            return false
        }
        // 1...N new entries are valid; the limit is 0 once the queue is broken, so this one
        // compare also turns a broken queue away.
        guard cursor.accepts(index) else { throw refillFailure(index: index) }
        // The queue's copy is written by the pop that follows (one store, not two).
        cursor = cursor.reading(index)
        return true
    }

    /// The error for an available index that moved too far, or the queue's own if it is broken.
    @inlinable
    mutating func refillFailure(index: UInt16) -> VirtqueueError {
        if broken { return brokenBy! }
        return fail(.availIndexTooFarAhead(availIndex: index, lastSeen: lastAvail))
    }

    /// Pops the chain at `cursor.next`, which is known to be before `cursor.end`. Returns
    /// `nil` only when the arena is full.
    @inlinable @inline(__always)
    mutating func popCached(_ availRing: UnsafeAvailRing, _ cursor: RingCursor) throws(VirtqueueError) -> DescriptorChain? {
        // The ring's mask (N - 1) serves both the slot and the range check (head < N).
        let head = availRing.entry(wrapping: cursor.next)
        guard head & ~UInt16(truncatingIfNeeded: availRing.mask) == 0 else { throw fail(.headOutOfRange(head)) }
        let tag = Self.inFlightTag(epoch)
        guard inFlight[Int(head)] != tag else { throw fail(.headInFlight(head)) }
        // Marked at once, while the flag's address is at hand (the descriptor loads below
        // are atomics, after which the compiler reloads it); undone if the chain waits.
        inFlight[Int(head)] = tag
        // The common chain is one descriptor: no link, no table. (head < N, the table's size,
        // and the table's alignment was checked at setup.)
        let d = ring.descriptorTable.loadValidated(Int(head))
        let chain: DescriptorChain
        if _fastPath(d.flags.rawValue & (DescriptorFlags.next.rawValue | DescriptorFlags.indirect.rawValue) == 0) {
            let isWritable = d.flags.contains(.write)
            // Its one segment travels in the chain value: nothing is written to the arena.
            chain = DescriptorChain(headIndex: head, epoch: epoch, first: ChainSegment(address: d.address, descriptorWord: d.word1),
                                    segmentCount: 1, readableSegmentCount: isWritable ? 0 : 1,
                                    readableLength: isWritable ? 0 : UInt64(d.length),
                                    writableLength: isWritable ? UInt64(d.length) : 0, view: arena.view)
        } else {
            let walked: DescriptorChain?
            // NEXT without INDIRECT, in a ring of at least two descriptors (a chain longer than
            // the ring is the walk's error to report): the head of a chain of two, most often.
            if d.flags.rawValue & (DescriptorFlags.next.rawValue | DescriptorFlags.indirect.rawValue) == DescriptorFlags.next.rawValue
                && ring.descriptorTable.count >= 2 {
                walked = try popPair(head: head, first: d)
            } else {
                walked = try walkChain(head: head, first: d, second: nil)
            }
            guard let long = walked else {
                inFlight[Int(head)] = 0
                availCursor = cursor
                return nil
            }
            chain = long
        }
        availCursor = cursor.advanced()
        if _slowPath(inflightTracker != nil) { inflightTracker!.popped(Int(head)) }
        return chain
    }

    /// Pops the chain whose head `d` links to a second direct descriptor (NEXT without
    /// INDIRECT) in a ring of at least two. The second most common chain is two descriptors (a
    /// request header and its data, a buffer and its status), taken here without the general
    /// walk; a longer one goes on in ``walkChain(head:first:second:)`` with the second
    /// descriptor's single read handed over, not read again. The rules are the walk's.
    @inlinable @inline(__always)
    mutating func popPair(head: UInt16, first d: Descriptor) throws(VirtqueueError) -> DescriptorChain? {
        guard Int(d.next) < ring.descriptorTable.count else {
            throw fail(.nextOutOfRange(next: d.next, tableSize: ring.descriptorTable.count))
        }
        let e = ring.descriptorTable.loadValidated(Int(d.next))
        guard e.flags.rawValue & (DescriptorFlags.next.rawValue | DescriptorFlags.indirect.rawValue) == 0 else {
            return try walkChain(head: head, first: d, second: e)
        }
        let firstWritable = d.flags.contains(.write), secondWritable = e.flags.contains(.write)
        guard secondWritable || !firstWritable else { throw fail(.readableAfterWritable) }
        // Two lengths below 2^32 each: the sum fits, and is checked as the walk does.
        let l1 = UInt64(d.length), l2 = UInt64(e.length)
        guard l1 &+ l2 <= 1 << 32 else { throw fail(.totalLengthOverflow) }
        // Slot 1 of the head's block, which is free while the head is not in flight.
        (arena.view.segments + (Int(head) &* UnsafeSegmentArena.blockSize &+ 1))
            .initialize(to: ChainSegment(address: e.address, descriptorWord: e.word1))
        let readableCount = firstWritable ? 0 : (secondWritable ? 1 : 2)
        return DescriptorChain(headIndex: head, epoch: epoch, first: ChainSegment(address: d.address, descriptorWord: d.word1),
                               segmentCount: 2, readableSegmentCount: readableCount,
                               readableLength: (firstWritable ? 0 : l1) &+ (secondWritable ? 0 : l2),
                               writableLength: (firstWritable ? l1 : 0) &+ (secondWritable ? l2 : 0), view: arena.view)
    }

    /// Processes the chains available now, in ring order: reads `avail.idx` once (one
    /// acquire for the whole batch), pops each chain, hands it to `body` with the translator,
    /// and adds it as used with the length `body` returns. Publishes nothing: call
    /// ``publishUsed()`` after, once.
    ///
    /// If `body` throws, the queue breaks with that error (for example
    /// ``VirtqueueError/memoryFault(_:)`` when a segment could not be reached) and it is
    /// rethrown; chains already processed stay added.
    ///
    /// - Returns: the number of chains processed (at most `limit`).
    @inlinable @inline(__always)
    public mutating func processAvailable(limit: Int = .max,
                                          _ body: (DescriptorChain, Memory) throws(VirtqueueError) -> UInt32) throws(VirtqueueError) -> Int {
        let availRing = ring.availRing
        var cursor = availCursor
        var processed = 0
        // Resubmitted chains first (GHT-INF-08), through the general pop.
        while resubmitRemaining > 0 && processed < limit {
            guard let chain = try popResubmitted() else { return processed }
            let length: UInt32
            do {
                length = try body(chain, memory)
            } catch {
                throw fail(error)
            }
            addUsed(chain, length: length)
            processed &+= 1
        }
        if cursor.isCaughtUp {
            guard try refillAvailable(availRing, &cursor) else { return processed }
        }
        while !cursor.isCaughtUp && processed < limit {
            guard let chain = try popCached(availRing, cursor) else { break }
            let length: UInt32
            do {
                length = try body(chain, memory)
            } catch {
                throw fail(error)
            }
            addUsed(chain, length: length)
            processed &+= 1
            cursor = availCursor
        }
        return processed
    }

    /// Walks the chain at `head` whose first descriptor is `first`, copying each descriptor
    /// once into the arena. Returns `nil` (having consumed nothing) when the arena has no room
    /// for the chain's overflow blocks. `second`, when given, is the descriptor `first` links
    /// to, already read (and `first.next` checked against the table).
    @inlinable @inline(never)
    mutating func walkChain(head: UInt16, first: Descriptor, second: Descriptor?) throws(VirtqueueError) -> DescriptorChain? {
        let limit = layout.count
        let blockSize = UnsafeSegmentArena.blockSize
        var table = ring.descriptorTable
        var inIndirect = false
        var d = first
        var count = 0
        var readableCount = 0
        var readable: UInt64 = 0
        var writable: UInt64 = 0
        var block = Int(head)
        // The first segment goes in the chain value; the others from slot 1 of the head's block.
        var firstSegment = ChainSegment(address: 0, descriptorWord: 0)
        var slot = arena.view.segments + (block &* blockSize &+ 1)
        var slotsLeft = blockSize &- 1
        var taken = 0
        while true {
            if _slowPath(d.flags.contains(.indirect)) {
                guard indirectEnabled else { throw fail(.indirectNotNegotiated) }
                guard !inIndirect else { throw fail(.nestedIndirect) }
                guard !d.flags.contains(.next) else { throw fail(.indirectWithNext) }
                guard d.length != 0, d.length & 15 == 0 else { throw fail(.invalidIndirectLength(d.length)) }
                let entries = Int(d.length &>> 4)
                guard entries <= limit else { throw fail(.indirectTableTooLarge(entries: entries, limit: limit)) }
                let range: HostRange
                do {
                    range = try memory.translateContiguous(d.address, length: Int(d.length), access: .read)
                } catch {
                    // GHT-IOVA-06: a table the front-end has not mapped yet is a miss, not a
                    // violation: nothing is consumed and the pop is retried after the mapping.
                    guard error.kind == .notMapped else { throw fail(.indirectTableFault(error)) }
                    releaseOverflow(after: Int(head), count: taken)
                    mappingMiss = error
                    return nil
                }
                // IND-DEV-01: the WRITE flag of the descriptor pointing at the table is ignored.
                table = UnsafeDescriptorTable(range)
                inIndirect = true
                d = table.load(0)
                continue
            }
            count &+= 1
            guard count <= limit else { throw fail(.chainTooLong(limit: limit)) }
            let isWritable = d.flags.contains(.write)
            if isWritable {
                writable &+= UInt64(d.length)
            } else {
                guard readableCount == count &- 1 else { throw fail(.readableAfterWritable) }
                readableCount = count
                readable &+= UInt64(d.length)
            }
            let segment = ChainSegment(address: d.address, descriptorWord: d.word1)
            if count == 1 {
                firstSegment = segment
            } else {
                if _slowPath(slotsLeft == 0) {
                    guard freeOverflow > 0 else {
                        releaseOverflow(after: Int(head), count: taken)
                        return nil
                    }
                    freeOverflow &-= 1
                    let next = arena.freeStack[freeOverflow]
                    arena.view.setLink(after: block, to: next)
                    block = Int(next)
                    slot = arena.view.segments + block &* blockSize
                    slotsLeft = blockSize
                    taken &+= 1
                }
                slot.initialize(to: segment)
                slot += 1
                slotsLeft &-= 1
            }
            if !d.flags.contains(.next) { break }
            guard Int(d.next) < table.count else { throw fail(.nextOutOfRange(next: d.next, tableSize: table.count)) }
            if count == 1, !inIndirect, let second {
                d = second
            } else {
                d = table.load(Int(d.next))
            }
        }
        // At most 32768 segments of less than 2^32 bytes each: the sums cannot overflow, so the
        // total is checked once here rather than per descriptor.
        guard readable &+ writable <= 1 << 32 else { throw fail(.totalLengthOverflow) }
        return DescriptorChain(headIndex: head, epoch: epoch, first: firstSegment, segmentCount: count,
                               readableSegmentCount: readableCount, readableLength: readable, writableLength: writable,
                               view: arena.view)
    }

    public mutating func takeMappingMiss() -> TranslationFault? {
        defer { mappingMiss = nil }
        return mappingMiss
    }

    /// Returns the `count` overflow blocks linked behind block `head` to the free stack.
    @inlinable
    mutating func releaseOverflow(after head: Int, count: Int) {
        arena.releaseOverflow(after: head, count: count, freeCount: &freeOverflow)
    }

    /// Un-pops `chain`, the chain popped last: it is no longer in flight and the next pop
    /// reads its available-ring entry and descriptors again from shared memory (validating
    /// them again: the driver may have changed them meanwhile).
    ///
    /// For a chain the device cannot process *yet* rather than a malformed one: in the
    /// vhost-user IOTLB mode a buffer at an IOVA the front-end has not mapped is a miss, which
    /// is reported and retried once the mapping arrives (GHT-IOVA-06). A chain of an earlier
    /// epoch (popped before a reset or a failure) is ignored.
    ///
    /// - Precondition: `chain` is the chain popped last and is still in flight (the
    ///   embedder's own bug otherwise).
    public mutating func giveBack(_ chain: DescriptorChain) {
        guard chain.epoch == epoch, !broken else { return }
        let head = chain.head
        precondition(inFlight[head] == Self.inFlightTag(epoch), "giving back a chain that is not in flight")
        if chain.segmentTotal > UnsafeSegmentArena.blockSize {
            releaseOverflow(after: head, count: (chain.segmentCount &- 1) / UnsafeSegmentArena.blockSize)
        }
        inFlight[head] = 0
        if _slowPath(resubmitPoppedAt != nil), resubmitPoppedAt == lastAvail {
            resubmitRemaining &+= 1
            resubmitPoppedAt = nil
            return
        }
        inflightTracker?.givenBack(head)
        availCursor = availCursor.retreated()
    }
}
