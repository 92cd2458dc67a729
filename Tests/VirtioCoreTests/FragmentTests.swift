import Testing
import VirtioCore

@Suite("Resolved chains: fragment readers and writers")
struct FragmentTests {
    /// Fragments of random sizes (zero-length ones included) laid out in `region`, a page apart.
    static func fragments(_ region: GuestMemoryRegion, count: Int, using rng: inout TestRandom) -> [HostRange] {
        (0..<count).map { i in region.range.slice(offset: i * 4096, length: Int(rng.next() % 5 == 0 ? 0 : 1 + rng.next() % 3000)) }
    }

    @Test("GHT-CHN-02, GHT-CHN-03: the reader and writer move exactly the fragments' bytes, in order, at any split of the calls")
    func anySplit() throws {
        var rng = TestRandom(seed: 0xF4A9)
        for _ in 0..<300 {
            let region = GuestMemoryRegion(size: 32 * 4096)
            let count = 1 + Int(rng.next() % 8)
            let all = Self.fragments(region, count: 2 * count, using: &rng)
            for (i, f) in all.enumerated() { f.withUnsafeMutableBytes { b in for k in b.indices { b[k] = UInt8(truncatingIfNeeded: i &* 31 &+ k) } } }
            let readable = 0..<count, writable = count..<(2 * count)
            let source = all[readable].flatMap { f in f.withUnsafeBytes { Array($0) } }
            var reader = FragmentReader(all, readable)
            #expect(reader.length == source.count)
            var got: [UInt8] = []
            while reader.remaining > 0 {
                let want = 1 + Int(rng.next() % 700)
                if rng.next() % 4 == 0 {
                    let skipped = reader.skip(want)
                    got += source[got.count..<(got.count + skipped)]
                } else {
                    got += try reader.readBytes(min(want, reader.remaining))
                }
            }
            #expect(got == source)
            #expect(throws: ChainAccessError.endOfChain(needed: 1, available: 0)) { _ = try reader.readBytes(1) }

            var writer = FragmentWriter(all, writable)
            let capacity = all[writable].reduce(0) { $0 + $1.count }
            #expect(writer.capacity == capacity)
            let payload = (0..<capacity).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 1) }
            var at = 0
            while at < payload.count {
                let n = min(1 + Int(rng.next() % 700), payload.count - at)
                _ = payload[at..<(at + n)].withUnsafeBytes { writer.write($0) }
                at += n
            }
            #expect(writer.usedLength == UInt32(capacity))
            #expect(all[writable].flatMap { f in f.withUnsafeBytes { Array($0) } } == payload)
            #expect(writer.write(UnsafeRawBufferPointer(start: nil, count: 0)) == 0)
        }
    }

    @Test("USD-DEV-02: transfer moves min(readable, writable) bytes across unaligned fragment boundaries")
    func transfer() throws {
        var rng = TestRandom(seed: 0x7A55)
        for _ in 0..<300 {
            let region = GuestMemoryRegion(size: 32 * 4096)
            let r = 1 + Int(rng.next() % 6), w = 1 + Int(rng.next() % 6)
            let all = Self.fragments(region, count: r + w, using: &rng)
            for (i, f) in all.enumerated() { f.withUnsafeMutableBytes { b in for k in b.indices { b[k] = UInt8(truncatingIfNeeded: i &* 131 &+ k &* 3) } } }
            let source = all[0..<r].flatMap { f in f.withUnsafeBytes { Array($0) } }
            var reader = FragmentReader(all, 0..<r)
            var writer = FragmentWriter(all, r..<(r + w))
            let limit = rng.next() % 3 == 0 ? Int(rng.next() % 2000) : Int.max
            let expected = min(source.count, writer.capacity, limit)
            #expect(writer.transfer(from: &reader, count: limit) == expected)
            #expect(reader.bytesRead == expected && writer.bytesWritten == expected)
            let written = all[r..<(r + w)].flatMap { f in f.withUnsafeBytes { Array($0) } }
            #expect(Array(written.prefix(expected)) == Array(source.prefix(expected)))
        }
    }

    @Test("GHT-CHN-02, GHT-CHN-03: the vectored reader and writer hand the fragments in order, bounded by count and maxFragments, and advance by what was used")
    func vectored() throws {
        let region = GuestMemoryRegion(size: 8 * 4096)
        let all = [100, 300, 50, 200, 70].enumerated().map { region.range.slice(offset: $0.offset * 4096, length: $0.element) }
        for (i, f) in all.enumerated() { f.withUnsafeMutableBytes { b in for k in b.indices { b[k] = UInt8(truncatingIfNeeded: i &* 41 &+ k) } } }
        let source = all[0..<2].flatMap { f in f.withUnsafeBytes { Array($0) } }
        var reader = FragmentReader(all, 0..<2)
        var seen: [[UInt8]] = []
        // 250 bytes in at most 2 pieces: the first fragment and 150 of the second; 120 used.
        let used = reader.consumeVectored(upTo: 250, maxFragments: 2) { pieces in
            seen = pieces.map { Array($0) }
            return 120
        }
        #expect(seen == [Array(source[0..<100]), Array(source[100..<250])])
        #expect(used == 120 && reader.bytesRead == 120)
        #expect(try reader.readBytes(reader.remaining) == Array(source[120...]))

        var writer = FragmentWriter(all, 2..<5)
        let filled = writer.produceVectored(upTo: 1000) { pieces in
            #expect(pieces.map(\.count) == [50, 200, 70])
            var n = 0
            for piece in pieces.prefix(2) {
                piece.initializeMemory(as: UInt8.self, repeating: 0xAB)
                n += piece.count
            }
            return n
        }
        #expect(filled == 250 && writer.bytesWritten == 250 && writer.remaining == 70)
        #expect(all[3].withUnsafeBytes { Array($0) } == [UInt8](repeating: 0xAB, count: 200))
        #expect(all[4].withUnsafeBytes { Array($0) } == (0..<70).map { UInt8(truncatingIfNeeded: 4 &* 41 &+ $0) })
    }
}
