/// The mapper's per-reference mapping counts (Xen's pin counts), kept only for references that
/// are mapped: an open-addressing hash table that grows with the references in use and never
/// with the size of the grant table a peer declares (GHT-LIM-21).
///
/// Linear probing over a power-of-2 table, at most half full, with Fibonacci hashing (as the
/// IOTLB's); a reference whose counts both drop to 0 leaves the table (backward-shift deletion,
/// so no tombstones accumulate). Map and unmap each probe once (``position(of:)``, then act at
/// that position). Not thread-safe: the mapper holds it under its lock.
final class GrantPinCounts {
    struct Slot {
        /// `reference + 1`; 0 marks an empty slot.
        var key: UInt32
        var readers: UInt16
        var writers: UInt16
        static let empty = Slot(key: 0, readers: 0, writers: 0)
    }

    private var slots: UnsafeMutablePointer<Slot>
    /// log2 of the table size.
    private var bits = 4
    /// The table's size in slots: below four times the peak number of mapped references,
    /// and at least 16.
    private(set) var capacity = 16
    /// References with at least one mapping.
    private(set) var count = 0

    init() {
        slots = .allocate(capacity: capacity)
        slots.initialize(repeating: .empty, count: capacity)
    }

    deinit { slots.deallocate() }

    private func home(_ key: UInt32) -> Int { Int(truncatingIfNeeded: (key &* 0x9E37_79B1) &>> UInt32(32 - bits)) }

    /// Where `ref` is: its slot, or the empty slot it would take (the table is never full).
    /// Valid until the next insertion or removal.
    func position(of ref: UInt32) -> Int {
        let key = ref &+ 1
        let mask = capacity &- 1
        var i = home(key)
        while slots[i].key != 0 && slots[i].key != key { i = (i &+ 1) & mask }
        return i
    }

    /// The counts at `position` (0 and 0 at an empty slot).
    func counts(at position: Int) -> (readers: UInt16, writers: UInt16) { (slots[position].readers, slots[position].writers) }

    /// How many mappings of `ref` exist, per kind.
    func counts(_ ref: UInt32) -> (readers: UInt16, writers: UInt16) { counts(at: position(of: ref)) }

    /// Counts one more mapping of `ref` of the given kind, at `position` (from ``position(of:)``).
    func add(_ ref: UInt32, at position: Int, write: Bool) {
        if slots[position].key == 0 {
            slots[position] = Slot(key: ref &+ 1, readers: 0, writers: 0)
            count &+= 1
        }
        if write { slots[position].writers &+= 1 } else { slots[position].readers &+= 1 }
        if count &* 2 > capacity { grow() }
    }

    /// Counts one mapping of `ref` of the given kind less, at `position` (where the caller found
    /// one); returns the counts left. A reference left with none leaves the table.
    func remove(at position: Int, write: Bool) -> (readers: UInt16, writers: UInt16) {
        guard slots[position].key != 0 else { return (0, 0) }
        if write { slots[position].writers &-= 1 } else { slots[position].readers &-= 1 }
        let left = counts(at: position)
        if left == (0, 0) { erase(at: position) }
        return left
    }

    /// Calls `body` with every mapped reference (for a revocation of a range larger than the
    /// table: the work is bounded by what is mapped, not by what the range names).
    func forEachReference(_ body: (UInt32) -> Void) {
        for i in 0..<capacity where slots[i].key != 0 { body(slots[i].key &- 1) }
    }

    /// Backward-shift deletion: entries after the hole that may live there move up.
    private func erase(at position: Int) {
        let mask = capacity &- 1
        var hole = position
        var j = position
        while true {
            j = (j &+ 1) & mask
            guard slots[j].key != 0 else { break }
            let h = home(slots[j].key)
            // Whether `h` lies cyclically in (hole, j]: then the entry must stay where it is.
            let stays = hole <= j ? (hole < h && h <= j) : (hole < h || h <= j)
            if !stays {
                slots[hole] = slots[j]
                hole = j
            }
        }
        slots[hole] = .empty
        count &-= 1
    }

    private func grow() {
        let old = slots, oldCapacity = capacity
        bits += 1
        capacity <<= 1
        slots = .allocate(capacity: capacity)
        slots.initialize(repeating: .empty, count: capacity)
        let mask = capacity &- 1
        for k in 0..<oldCapacity where old[k].key != 0 {
            var i = home(old[k].key)
            while slots[i].key != 0 { i = (i &+ 1) & mask }
            slots[i] = old[k]
        }
        old.deallocate()
    }
}
