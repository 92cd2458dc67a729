/// What the fuzzer knows of its own memory after the mutations: the writable capacity of the
/// head it publishes, the ranges a device may write, and a snapshot of everything else, so a
/// write into device-readable memory shows as a changed canary (GHT-CHK-18).
enum FuzzMemory {
    /// The indirect tables the walk follows hold at most this many entries (as the checker writes them).
    static let indirectEntries = 64

    /// The device-writable bytes of the chain at `head` as the descriptors now say, following
    /// `next` and one level of indirection (an upper bound: no false finding), bounded by the queue size; saturates at UInt32.max.
    static func capacity(of head: UInt16, in c: CheckConnection) -> UInt32 {
        var total: UInt64 = 0
        var index = Int(head), steps = 0
        while steps < c.ring.size {
            steps += 1
            let d = descriptor(c, CheckRing.descriptorTable, index)
            // An INDIRECT descriptor counts both ways: as a table, and (a device may take an
            // INDIRECT past the head for a plain buffer) as the buffer its WRITE flag says.
            if d.flags & 4 != 0 {
                for e in indirectTable(c, d) where e.flags & 2 != 0 { total += UInt64(e.length) }
            }
            if d.flags & 2 != 0 { total += UInt64(d.length) }
            guard d.flags & 1 != 0, Int(d.next) < c.ring.size else { break }
            index = Int(d.next)
        }
        return UInt32(min(total, UInt64(UInt32.max)))
    }

    struct Descriptor {
        var address: UInt64, length: UInt32, flags: UInt16, next: UInt16
    }

    static func descriptor(_ c: CheckConnection, _ table: UInt64, _ index: Int) -> Descriptor {
        let at = table + UInt64(index) * 16
        return Descriptor(address: c.ring.load(UInt64.self, at: at), length: c.ring.load(UInt32.self, at: at + 8),
                          flags: c.ring.load(UInt16.self, at: at + 12), next: c.ring.load(UInt16.self, at: at + 14))
    }

    /// The entries of the indirect table `d` points at, when it lies inside the memory.
    static func indirectTable(_ c: CheckConnection, _ d: Descriptor) -> [Descriptor] {
        let count = min(Int(d.length / 16), indirectEntries)
        guard d.address <= UInt64(c.memory.size), UInt64(count * 16) <= UInt64(c.memory.size) - d.address else { return [] }
        return (0..<count).map { descriptor(c, d.address, $0) }
    }

    /// Every range a device may write: the used ring's page (and the idle ring's), and every descriptor marked
    /// WRITE in the descriptor table or in an indirect table it points at, whatever chain it
    /// belongs to (conservative: a malformed chain never makes a false finding).
    static func writableRanges(_ c: CheckConnection) -> [Range<UInt64>] {
        var ranges: [Range<UInt64>] = [CheckRing.usedRing..<CheckRing.indirectBase]
        if c.idleReceiveQueue { ranges.append(CheckRing.idleRing..<CheckRing.bufferBase) }
        func add(_ d: Descriptor) {
            guard d.flags & 2 != 0, d.address < UInt64(c.memory.size) else { return }
            ranges.append(d.address..<min(d.address &+ UInt64(d.length), UInt64(c.memory.size)))
        }
        for i in 0..<c.ring.size {
            let d = descriptor(c, CheckRing.descriptorTable, i)
            if d.flags & 4 != 0 { indirectTable(c, d).forEach(add) }
            add(d)
        }
        return ranges
    }

    /// The memory's first `count` bytes before the request is published.
    struct Snapshot {
        private(set) var bytes: [UInt8]

        init(_ c: CheckConnection, count: Int) {
            bytes = c.ring.bytes(at: 0, count: count)
        }

        /// Takes `count` bytes at `address` again (bytes the checker wrote after the snapshot).
        mutating func refresh(_ c: CheckConnection, from address: UInt64, count: Int) {
            bytes.replaceSubrange(Int(address)..<Int(address) + count, with: c.ring.bytes(at: address, count: count))
        }

        /// The first changed byte outside the device-writable ranges, described; nil when none.
        func damage(in c: CheckConnection, canaryChecked: Bool) -> String? {
            guard canaryChecked else { return nil }
            let writable = FuzzMemory.writableRanges(c)
            let now = c.ring.bytes(at: 0, count: bytes.count)
            var changed: [Int] = []
            for i in 0..<bytes.count where bytes[i] != now[i] && !writable.contains(where: { $0.contains(UInt64(i)) }) {
                changed.append(i)
            }
            guard let first = changed.first else { return nil }
            let shown = now[first..<min(first + 16, now.count)]
            return "\(changed.count) byte(s) changed outside every device-writable buffer, the first at guest address 0x\(String(first, radix: 16)) "
                + "(was \(CheckConnection.hex(bytes[first..<min(first + 16, bytes.count)])), now \(CheckConnection.hex(shown)))"
        }
    }
}
