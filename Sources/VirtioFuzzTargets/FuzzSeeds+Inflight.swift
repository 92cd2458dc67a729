import VirtioCore

extension FuzzSeeds {
    /// In-flight areas of a ring of 8 (used index 2) as a back-end leaves them: fresh, three
    /// requests in flight, and a batch published but not cleared; each over a ring whose
    /// descriptors are single writable buffers, with two new chains available, then pops and
    /// completions.
    static func inflightRecovery() -> [[UInt8]] {
        func area(inFlight: [(head: Int, counter: UInt64)], usedIdx: UInt16, lastBatch: UInt16 = 0, links: [(Int, UInt16)] = []) -> [UInt8] {
            var bytes = [UInt8](repeating: 0, count: InflightLayout.queueAreaSize(queueSize: 8, packed: false))
            func put(_ value: [UInt8], at offset: Int) { bytes.replaceSubrange(offset..<(offset + value.count), with: value) }
            put(le(UInt16(1)), at: 8)
            put(le(UInt16(8)), at: 10)
            put(le(lastBatch), at: 12)
            put(le(usedIdx), at: 14)
            for (head, counter) in inFlight {
                bytes[16 + 16 * head] = 1
                put(le(counter), at: 16 + 16 * head + 8)
            }
            for (head, next) in links { put(le(next), at: 16 + 16 * head + 6) }
            return bytes
        }
        var ring = [UInt8](repeating: 0, count: 4096 + 64)
        for d in 0..<8 {
            let descriptor = le(UInt64(0x8000 + d * 64)) + le(UInt32(64)) + le(UInt16(2)) + le(UInt16(0))
            ring.replaceSubrange((d * 16)..<(d * 16 + 16), with: descriptor)
        }
        // The available ring after the table (16 × 8 bytes): flags, idx, then entries 0…7.
        for slot in 0..<8 { ring.replaceSubrange((128 + 4 + slot * 2)..<(128 + 6 + slot * 2), with: le(UInt16(slot))) }
        let tail: [UInt8] = le(UInt16(7)) + [1, 1, 0, 0, 1, 0, 1, 1, 0, 1, 0]
        func seed(_ area: [UInt8]) -> [UInt8] {
            [3] + le(UInt16(2)) + le(UInt16(area.count)) + area + le(UInt16(ring.count)) + ring + tail
        }
        return [
            seed([]),
            seed(area(inFlight: [(5, 10), (3, 11), (6, 12)], usedIdx: 2)),
            seed(area(inFlight: [(0, 1), (1, 2), (4, 3)], usedIdx: 0, lastBatch: 1, links: [(1, 0)])),
        ]
    }
}
