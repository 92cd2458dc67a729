/// A chain a packed queue's in-flight area records as in flight, as copied when it was popped.
public struct InflightPackedChain: Equatable, Sendable {
    /// Its head entry and last entry in the area.
    public var entry: UInt16, last: UInt16
    /// Its buffer id (the last descriptor's) and the counter it was popped with.
    public var id: UInt16, counter: UInt64
    /// The copies of its ring descriptors: a NEXT-linked list, or one INDIRECT descriptor.
    public var descriptors: [PackedDescriptor]
}

/// What a packed queue resumes with when it starts over an in-flight area (Spec/restart.md §1,
/// GHT-INF-12…GHT-INF-15). The area is the front-end's memory, left by a back-end that may have
/// died at any instruction, or written by a hostile one: every field is checked before it is
/// believed, and every link is followed at most once.
public struct InflightPackedRecovery: Equatable, Sendable {
    /// The chains in flight, to resubmit before any new one, in counter order.
    public var resubmit: [InflightPackedChain]
    /// The counter the next pop takes.
    public var nextCounter: UInt64
    /// The used position the last committed batch reached, and the next available position:
    /// that plus every slot the chains in flight took.
    public var usedPosition: PackedRingPosition, availPosition: PackedRingPosition
    /// Whether the area was fresh (version 0): nothing recorded, the positions are the queue's.
    public var fresh: Bool
    /// The free list as rebuilt: its head (the queue size when empty) and each entry's link.
    public var freeHead: UInt16
    public var links: [UInt16]

    /// Recovers (or, for version 0, initializes) `area` for a ring of `queueSize` slots.
    ///
    /// - Parameters:
    ///   - availPosition, usedPosition: where the queue was set up (SET_VRING_BASE): kept for a
    ///     fresh area, written into it as its used position.
    ///   - isUsedWritten: whether the ring slot at a position holds a used descriptor of that
    ///     lap (it is no longer available in it): decides a batch caught between its used write
    ///     and its commit.
    public static func recover(_ area: UnsafeInflightPacked, queueSize n: Int, availPosition: PackedRingPosition,
                               usedPosition: PackedRingPosition,
                               isUsedWritten: (PackedRingPosition) -> Bool) throws(InflightRegionDefect) -> InflightPackedRecovery {
        guard area.capacity >= n else {
            throw .areaTooSmall(bytes: InflightLayout.packedHeaderSize + area.capacity * InflightLayout.packedEntrySize, queueSize: n)
        }
        let version = area.version
        if version == 0 {
            let links = (0..<n).map { UInt16(truncatingIfNeeded: $0 + 1) }
            for i in 0..<n { area.setHead(i, inflight: 0, next: links[i], last: 0, num: 0) }
            area.features = 0
            area.descriptorCount = UInt16(truncatingIfNeeded: n)
            area.setFreeHeads(0)
            area.setUsed(usedPosition, committed: usedPosition)
            area.version = InflightLayout.version
            return InflightPackedRecovery(resubmit: [], nextCounter: 0, usedPosition: usedPosition, availPosition: availPosition,
                                          fresh: true, freeHead: 0, links: links)
        }
        guard version == InflightLayout.version else { throw .version(version) }
        guard Int(area.descriptorCount) == n else { throw .descriptorCount(area.descriptorCount, queueSize: n) }
        let current = try position(area.usedIndex, area.usedWrapCounter, n)
        let old = try position(area.oldUsedIndex, area.oldUsedWrapCounter, n)
        // A batch between its current fields and its commit: committed if its first used
        // descriptor reached the ring, rolled back otherwise (GHT-INF-12).
        let used = current != old && isUsedWritten(old) ? current : old
        let freeHead = used == current && current != old ? area.freeHead : area.oldFreeHead

        // The free list: bounded by the ring, never an entry twice; what is on it is not in flight.
        var owner = [Int](repeating: -1, count: n)   // -1 unclaimed, -2 free, else the head entry
        var e = Int(freeHead)
        while e < n {
            guard owner[e] == -1 else { throw .listLink(UInt16(e)) }
            let flag = area.flag(e)
            guard flag <= 1 else { throw .flag(index: e, value: flag) }
            owner[e] = -2
            e = Int(area.next(e))
        }
        var chains: [InflightPackedChain] = []
        var ids = [Bool](repeating: false, count: n)
        var slots = 0
        for head in 0..<n where owner[head] != -2 {
            let flag = area.flag(head)
            guard flag <= 1 else { throw .flag(index: head, value: flag) }
            guard flag == 1 else { continue }
            let chain = try walk(area, head: head, n: n, owner: &owner)
            guard !ids[Int(chain.id)] else { throw .entry(index: head) }
            ids[Int(chain.id)] = true
            slots += chain.descriptors.count
            chains.append(chain)
        }
        chains.sort { $0.counter < $1.counter }
        for k in chains.indices.dropFirst() where chains[k].counter == chains[k - 1].counter {
            throw .counter(index: Int(chains[k].entry), value: chains[k].counter)
        }
        var next: UInt64 = 0
        if let last = chains.last {
            guard last.counter < UInt64.max else { throw .counter(index: Int(last.entry), value: last.counter) }
            next = last.counter + 1
        }
        // Believed: clear the free entries' flags, rebuild the free list (entries no chain holds,
        // in index order: also those a crash left on no list), commit the used position.
        var links = (0..<n).map { UInt16(truncatingIfNeeded: area.next($0)) }
        var free = n
        for i in stride(from: n - 1, through: 0, by: -1) where owner[i] < 0 {
            area.setFlag(i, 0)
            area.setNext(i, UInt16(truncatingIfNeeded: free))
            links[i] = UInt16(truncatingIfNeeded: free)
            free = i
        }
        area.setFreeHeads(UInt16(truncatingIfNeeded: free))
        area.setUsed(used, committed: used)
        return InflightPackedRecovery(resubmit: chains, nextCounter: next, usedPosition: used,
                                      availPosition: used.advanced(by: slots, count: n), fresh: false,
                                      freeHead: UInt16(truncatingIfNeeded: free), links: links)
    }

    /// A slot below the ring and a wrap counter of 0 or 1.
    static func position(_ slot: UInt16, _ wrap: UInt8, _ n: Int) throws(InflightRegionDefect) -> PackedRingPosition {
        guard Int(slot) < n else { throw .position(slot) }
        guard wrap <= 1 else { throw .position(UInt16(wrap)) }
        return PackedRingPosition(slot: Int(slot), wrapCounter: wrap == 1)
    }

    /// The chain whose head entry is `head`: `num` entries from it along `next`, the last one
    /// `last`, none on another list; a NEXT-linked list of direct descriptors or one INDIRECT
    /// descriptor; its id (the last descriptor's) below the ring.
    static func walk(_ area: UnsafeInflightPacked, head: Int, n: Int,
                     owner: inout [Int]) throws(InflightRegionDefect) -> InflightPackedChain {
        let num = Int(area.num(head))
        guard num >= 1, num <= n else { throw .entry(index: head) }
        var descriptors: [PackedDescriptor] = []
        descriptors.reserveCapacity(num)
        var e = head
        for k in 0..<num {
            guard e < n, owner[e] == -1 else { throw .listLink(UInt16(truncatingIfNeeded: e)) }
            owner[e] = head
            let d = area.descriptor(e)
            let isLast = k == num - 1
            let indirect = d.flags.contains(.indirect)
            guard d.flags.contains(.next) != isLast, !indirect || (num == 1) else { throw .entry(index: head) }
            descriptors.append(d)
            if !isLast { e = Int(area.next(e)) }
        }
        guard e == Int(area.last(head)) else { throw .entry(index: head) }
        let id = descriptors[num - 1].id
        guard Int(id) < n else { throw .entry(index: head) }
        return InflightPackedChain(entry: UInt16(head), last: UInt16(e), id: id, counter: area.counter(head), descriptors: descriptors)
    }
}
