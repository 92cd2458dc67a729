extension PackedDeviceQueue {
    /// Pops the next available list, reading each of its descriptors once and validating it
    /// as it goes (VIRTIO 1.2 §2.8.6, §2.8.7, §2.8.15, §2.8.18; Spec/transport.md §4).
    ///
    /// - Returns: the chain, or `nil` when the slot at the device's position is not available
    ///   in the current lap (PKD-DEV-03) — or when the segment arena is full until some long
    ///   chains complete.
    /// - Throws: the violation that broke the queue (now or earlier).
    @inlinable @inline(__always)
    public mutating func popAvailable() throws(VirtqueueError) -> DescriptorChain? {
        if _slowPath(broken) { throw brokenBy! }
        if _slowPath(resubmitRemaining > 0) { return try popResubmitted() }
        let position = availPosition
        let descriptors = ring.descriptorRing
        // The flags come with len and id in one acquire load: nothing of the slot is read twice.
        let word1 = descriptors.loadWord1(position.slot)
        let flags = PackedDescriptorFlags(rawValue: UInt16(truncatingIfNeeded: word1 &>> 48))
        guard flags.isAvailable(wrapCounter: position.wrapCounter) else { return nil }
        let d = PackedDescriptor(word0: descriptors.loadAddress(position.slot).littleEndian, word1: word1.littleEndian)
        guard _fastPath(flags.rawValue & (PackedDescriptorFlags.next.rawValue | PackedDescriptorFlags.indirect.rawValue) == 0) else {
            return try walkList(at: position, first: d)
        }
        let id = try claim(d.id, slots: 1)
        if _slowPath(inflightTracker != nil) { try trackOne(d, id: id) }
        let isWritable = flags.contains(.write)
        availPosition = position.advanced(by: 1, count: count)
        return DescriptorChain(headIndex: id, epoch: epoch,
                               first: ChainSegment(address: d.address, length: d.length, isWritable: isWritable),
                               segmentCount: 1, readableSegmentCount: isWritable ? 0 : 1,
                               readableLength: isWritable ? 0 : UInt64(d.length),
                               writableLength: isWritable ? UInt64(d.length) : 0, view: arena.view)
    }

    /// Marks buffer `id` in flight with a list of `slots` ring slots, after checking that it is
    /// an id the driver may use now: below N and not in flight (PKD-DEF-06).
    @inlinable @inline(__always)
    mutating func claim(_ id: UInt16, slots: Int) throws(VirtqueueError) -> UInt16 {
        guard Int(id) < count else { throw fail(.bufferIdOutOfRange(id)) }
        let tag = Self.inFlightTag(epoch)
        guard UInt32(truncatingIfNeeded: inFlight[Int(id)]) != tag else { throw fail(.headInFlight(id)) }
        inFlight[Int(id)] = UInt64(tag) | UInt64(slots) &<< 32
        return id
    }

    /// Walks a list of several descriptors or an indirect one starting at `position`, whose
    /// first descriptor is `first`. Segments are staged in the arena's spare block and moved
    /// to the buffer id's block once the id (in the last descriptor) is known and valid.
    /// Returns `nil`, having consumed nothing, when the arena has no room.
    @inlinable
    mutating func walkList(at position: PackedRingPosition, first: PackedDescriptor) throws(VirtqueueError) -> DescriptorChain? {
        var segments = SegmentStaging(block: count, view: arena.view)
        var d = first
        var slots = 1
        let tracking = inflightTracker != nil
        if _slowPath(tracking) { inflightTracker!.beginList() }
        if d.flags.contains(.indirect) {
            if _slowPath(tracking) { try stageTracked(d) }
            guard try appendIndirect(d, to: &segments) else { return nil }
        } else {
            var slot = position
            while true {
                guard try append(d, to: &segments) else { return nil }
                if _slowPath(tracking) { try stageTracked(d) }
                if !d.flags.contains(.next) { break }
                // A list never spans more than the ring: this also ends every loop (PKD-DRV-04).
                guard slots < count else { throw fail(.chainTooLong(limit: count)) }
                slot = slot.advanced(by: 1, count: count)
                slots &+= 1
                // The driver exposes a list's first descriptor last, so every later one must
                // already be available in its own lap (PKD-DEF-06, PKD-DRV-07).
                d = ring.descriptorRing.load(slot.slot)
                guard d.flags.isAvailable(wrapCounter: slot.wrapCounter) else {
                    throw fail(.listDescriptorNotAvailable(slot: UInt16(truncatingIfNeeded: slot.slot)))
                }
                guard !d.flags.contains(.indirect) else { throw fail(.indirectInList) }   // PKD-IND-01
            }
        }
        let chain = try finishList(segments, id: d.id, slots: slots)
        if _slowPath(tracking) { inflightTracker!.popped(id: UInt16(truncatingIfNeeded: chain.headIndex)) }
        availPosition = position.advanced(by: slots, count: count)
        return chain
    }

    /// Adds the entries of the indirect table descriptor `d` names to the staged chain.
    /// Returns `false`, having consumed nothing, when the arena is full or the table is not
    /// mapped yet (GHT-IOVA-06).
    @inlinable
    mutating func appendIndirect(_ d: PackedDescriptor, to segments: inout SegmentStaging) throws(VirtqueueError) -> Bool {
        guard indirectEnabled else { throw fail(.indirectNotNegotiated) }
        guard !d.flags.contains(.next) else { throw fail(.indirectWithNext) }
        guard d.length != 0, d.length & 15 == 0 else { throw fail(.invalidIndirectLength(d.length)) }
        let entries = Int(d.length &>> 4)
        guard entries <= count else { throw fail(.indirectTableTooLarge(entries: entries, limit: count)) }
        let table: UnsafeDescriptorTable
        do {
            table = UnsafeDescriptorTable(try memory.translateContiguous(d.address, length: Int(d.length), access: .read))
        } catch {
            // GHT-IOVA-06: not mapped yet is a miss; nothing is consumed (see the split ring).
            guard error.kind == .notMapped else { throw fail(.indirectTableFault(error)) }
            mappingMiss = error
            return false
        }
        // PKD-DEF-07: entries follow each other (no links); only WRITE counts in them, and
        // the WRITE of the INDIRECT descriptor itself is ignored.
        for i in 0..<entries {
            let e = table.loadPacked(i)
            guard try append(e, to: &segments) else { return false }
        }
        return true
    }

    /// Ends a walked list whose buffer id is `id` and which took `slots` ring slots: checks its
    /// total length, claims the id and moves the staged segments to the id's block.
    @inlinable @inline(__always)
    mutating func finishList(_ segments: SegmentStaging, id rawID: UInt16, slots: Int) throws(VirtqueueError) -> DescriptorChain {
        // At most 32768 segments of less than 2^32 bytes each: the sums cannot overflow.
        guard segments.readable &+ segments.writable <= 1 << 32 else { throw fail(.totalLengthOverflow) }
        let id = try claim(rawID, slots: slots)
        segments.move(to: Int(id), view: arena.view)
        return DescriptorChain(headIndex: id, epoch: epoch, first: segments.first, segmentCount: segments.count,
                               readableSegmentCount: segments.readableCount, readableLength: segments.readable,
                               writableLength: segments.writable, view: arena.view)
    }

    /// Adds descriptor `d` to the staged chain (its WRITE flag gives the direction). Returns
    /// `false`, with the staged overflow blocks released, when the arena is full.
    @inlinable @inline(__always)
    mutating func append(_ d: PackedDescriptor, to segments: inout SegmentStaging) throws(VirtqueueError) -> Bool {
        let isWritable = d.flags.contains(.write)
        guard isWritable || segments.readableCount == segments.count else { throw fail(.readableAfterWritable) }
        let segment = ChainSegment(address: d.address, length: d.length, isWritable: isWritable)
        if segments.needsBlock {
            guard freeOverflow > 0 else {
                releaseOverflow(after: segments.headBlock, count: segments.taken)
                return false
            }
            freeOverflow &-= 1
            segments.link(arena.freeStack[freeOverflow], view: arena.view)
        }
        segments.append(segment)
        return true
    }

    /// Returns the `count` overflow blocks linked behind block `head` to the free stack.
    @inlinable
    mutating func releaseOverflow(after head: Int, count: Int) {
        arena.releaseOverflow(after: head, count: count, freeCount: &freeOverflow)
    }

    /// Un-pops `chain`, the chain popped last, so that the next pop reads its slots again (see
    /// ``SplitDeviceQueue/giveBack(_:)``; GHT-IOVA-06).
    ///
    /// - Precondition: `chain` is the chain popped last and is still in flight.
    public mutating func takeMappingMiss() -> TranslationFault? {
        defer { mappingMiss = nil }
        return mappingMiss
    }

    public mutating func giveBack(_ chain: DescriptorChain) {
        guard chain.epoch == epoch, !broken else { return }
        let id = chain.head
        let entry = inFlight[id]
        precondition(UInt32(truncatingIfNeeded: entry) == Self.inFlightTag(epoch), "giving back a chain that is not in flight")
        if chain.segmentTotal > UnsafeSegmentArena.blockSize {
            releaseOverflow(after: id, count: (chain.segmentCount &- 1) / UnsafeSegmentArena.blockSize)
        }
        inFlight[id] = 0
        // A resubmitted chain (the last one: no new chain is popped before them) goes back to
        // the list; its entries stay in flight in the area.
        if _slowPath(entry & Self.resubmittedMark != 0) {
            resubmitRemaining &+= 1
            return
        }
        inflightTracker?.givenBack(id: UInt16(truncatingIfNeeded: id))
        availPosition = availPosition.retreated(by: Self.slots(entry), count: count)
    }

    /// Whether the slot at the device's position is available now (a look, not a pop).
    public var hasAvailable: Bool {
        !broken && PackedDescriptorFlags(rawValue: UInt16(truncatingIfNeeded: ring.descriptorRing.loadWord1(availPosition.slot) &>> 48))
            .isAvailable(wrapCounter: availPosition.wrapCounter)
    }
}

/// The segments of a list being walked, staged in an arena block: the first in the value,
/// the next three in slots 1–3 of the block, the rest in linked overflow blocks.
@frozen @usableFromInline
struct SegmentStaging {
    @usableFromInline let headBlock: Int
    @usableFromInline var first = ChainSegment(address: 0, length: 0, isWritable: false)
    @usableFromInline var count = 0
    @usableFromInline var readableCount = 0
    @usableFromInline var readable: UInt64 = 0
    @usableFromInline var writable: UInt64 = 0
    @usableFromInline var block: Int
    @usableFromInline var slot: UnsafeMutablePointer<ChainSegment>
    @usableFromInline var slotsLeft: Int
    /// Overflow blocks linked behind the head block.
    @usableFromInline var taken = 0

    @inlinable
    init(block: Int, view: SegmentView) {
        headBlock = block
        self.block = block
        slot = view.segments + (block &* UnsafeSegmentArena.blockSize &+ 1)
        slotsLeft = UnsafeSegmentArena.blockSize &- 1
    }

    /// Whether the next segment (not the first) needs a new overflow block.
    @inlinable
    var needsBlock: Bool { count > 0 && slotsLeft == 0 }

    @inlinable
    mutating func link(_ next: UInt32, view: SegmentView) {
        view.setLink(after: block, to: next)
        block = Int(next)
        slot = view.segments + block &* UnsafeSegmentArena.blockSize
        slotsLeft = UnsafeSegmentArena.blockSize
        taken &+= 1
    }

    @inlinable
    mutating func append(_ segment: ChainSegment) {
        count &+= 1
        if segment.isWritable {
            writable &+= UInt64(segment.length)
        } else {
            readableCount = count
            readable &+= UInt64(segment.length)
        }
        if count == 1 {
            first = segment
            return
        }
        slot.initialize(to: segment)
        slot += 1
        slotsLeft &-= 1
    }

    /// Moves the staged segments from the staging block to block `target`: three slots and
    /// one link, whatever the chain's length (the overflow blocks stay where they are).
    @inlinable @inline(__always)
    func move(to target: Int, view: SegmentView) {
        guard count > 1 else { return }
        let from = view.segments + (headBlock &* UnsafeSegmentArena.blockSize &+ 1)
        let to = view.segments + (target &* UnsafeSegmentArena.blockSize &+ 1)
        to.update(from: from, count: min(count &- 1, UnsafeSegmentArena.blockSize &- 1))
        if taken > 0 { view.setLink(after: target, to: UInt32(view.link(after: headBlock))) }
    }
}
