/// The mapper's per-reference mapping counts (Xen's pin counts), kept only for references that
/// are mapped: an open-addressing hash table that grows with the references in use and never
/// with the size of the grant table a peer declares (GHT-LIM-21).
///
/// Linear probing over a power-of-2 table, at most half full, with Fibonacci hashing (as the
/// IOTLB's); a reference whose counts both drop to 0 leaves the table (backward-shift deletion,
/// so no tombstones accumulate). Not thread-safe: the mapper holds it under its lock.
struct GrantPinCounts {
    struct Slot {
        /// `reference + 1`; 0 marks an empty slot.
        var key: UInt32
        var readers: UInt16
        var writers: UInt16
    }

    private var slots: [Slot]
    /// log2 of the table size.
    private var bits: Int
    /// References with at least one mapping.
    private(set) var count = 0

    init() {
        bits = 4
        slots = Array(repeating: Slot(key: 0, readers: 0, writers: 0), count: 1 << bits)
    }

    /// The table's size in slots (it stays below twice the peak number of mapped references,
    /// rounded up to a power of 2, and at least 16).
    var capacity: Int { slots.count }

    private func home(_ key: UInt32) -> Int { Int((key &* 0x9E37_79B1) &>> UInt32(32 - bits)) }

    /// The slot holding `ref`, if it is mapped.
    private func find(_ ref: UInt32) -> Int? {
        let key = ref &+ 1
        let mask = slots.count - 1
        var i = home(key)
        while slots[i].key != 0 {
            if slots[i].key == key { return i }
            i = (i + 1) & mask
        }
        return nil
    }

    /// How many mappings of `ref` exist, per kind.
    func counts(_ ref: UInt32) -> (readers: UInt16, writers: UInt16) {
        guard let i = find(ref) else { return (0, 0) }
        return (slots[i].readers, slots[i].writers)
    }

    /// Counts one more mapping of `ref` of the given kind.
    mutating func add(_ ref: UInt32, write: Bool) {
        if (count + 1) * 2 > slots.count { grow() }
        let key = ref &+ 1
        let mask = slots.count - 1
        var i = home(key)
        while slots[i].key != 0 && slots[i].key != key { i = (i + 1) & mask }
        if slots[i].key == 0 {
            slots[i] = Slot(key: key, readers: 0, writers: 0)
            count += 1
        }
        if write { slots[i].writers += 1 } else { slots[i].readers += 1 }
    }

    /// Counts one mapping of `ref` of the given kind less (the caller checked that one exists);
    /// returns the counts left. A reference left with none leaves the table.
    mutating func remove(_ ref: UInt32, write: Bool) -> (readers: UInt16, writers: UInt16) {
        guard let i = find(ref) else { return (0, 0) }
        if write { slots[i].writers -= 1 } else { slots[i].readers -= 1 }
        let left = (slots[i].readers, slots[i].writers)
        if left == (0, 0) { erase(at: i) }
        return left
    }

    /// Calls `body` with every mapped reference (for a revocation of a range larger than the
    /// table: the work is bounded by what is mapped, not by what the range names).
    func forEachReference(_ body: (UInt32) -> Void) {
        for s in slots where s.key != 0 { body(s.key &- 1) }
    }

    /// Backward-shift deletion: entries after the hole that may live there move up.
    private mutating func erase(at hole: Int) {
        let mask = slots.count - 1
        var hole = hole
        var j = hole
        while true {
            j = (j + 1) & mask
            guard slots[j].key != 0 else { break }
            let h = home(slots[j].key)
            // Whether `h` lies cyclically in (hole, j]: then the entry must stay where it is.
            let stays = hole <= j ? (hole < h && h <= j) : (hole < h || h <= j)
            if !stays {
                slots[hole] = slots[j]
                hole = j
            }
        }
        slots[hole] = Slot(key: 0, readers: 0, writers: 0)
        count -= 1
    }

    private mutating func grow() {
        let old = slots
        bits += 1
        slots = Array(repeating: Slot(key: 0, readers: 0, writers: 0), count: 1 << bits)
        let mask = slots.count - 1
        for s in old where s.key != 0 {
            var i = home(s.key)
            while slots[i].key != 0 { i = (i + 1) & mask }
            slots[i] = s
        }
    }
}
