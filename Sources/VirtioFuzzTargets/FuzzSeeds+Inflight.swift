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
        ] + packedInflightRecovery()
    }

    /// Packed areas of a ring of 8 as a back-end leaves them, made by a real queue: fresh, and
    /// with a list of three, an indirect chain and two single ones popped, two completed out of
    /// order; each with the ring image it left (used descriptors over popped slots, two more
    /// available), then pops and completions.
    static func packedInflightRecovery() -> [[UInt8]] {
        let region = GuestMemoryRegion(size: 5 * 4096)
        let layout = PackedRingLayout(queueSize: 8)!
        let ring = try! PackedRing(layout: layout, contiguous: region.hostRange(at: 0, count: layout.contiguousOffsets.totalSize)!)
        let features: VirtioFeatures = [.version1, .ringPacked, .indirectDescriptors]
        let tables = IndirectTablePool(block: region.hostRange(at: 4096, count: 4096)!, deviceAddress: 4096, tableCount: 2, entriesPerTable: 4)
        var driver = PackedDriverQueue(ring: ring, features: features, indirectTables: tables)
        let buffer = { (k: Int) in BufferSegment(address: UInt64(0x2000 + k * 64), length: 64) }
        let areaBytes = InflightLayout.queueAreaSize(queueSize: 8, packed: true)
        let areaMemory = GuestMemoryRegion(size: areaBytes)
        var device = PackedDeviceQueue(ring: ring, memory: region.identityTranslator, features: features)
        try! device.trackInflight(in: areaMemory.hostRange(at: 0, count: areaBytes)!)
        let tail: [UInt8] = [1, 1, 0, 0, 1, 0, 1, 1, 0, 1, 0, 1, 1]
        func seed(_ area: [UInt8]) -> [UInt8] {
            let image = region.read(at: 0, count: 4096 + 128)
            return [0x83] + le(PackedRingPosition.start.rawValue) + le(UInt16(area.count)) + area + le(UInt16(image.count)) + image + tail
        }
        try! driver.add(readable: [buffer(0)], writable: [], token: 0)
        try! driver.add(readable: [buffer(1)], writable: [], token: 1)
        let fresh = seed([])
        try! driver.add(readable: [buffer(2)], writable: [buffer(3), buffer(4)], token: 2, layout: .direct)
        try! driver.add(readable: [buffer(5)], writable: [buffer(6)], token: 3, layout: .indirect)
        var chains: [DescriptorChain] = []
        while let c = try! device.popAvailable() { chains.append(c) }
        device.addUsed(chains[1], length: 0)
        device.addUsed(chains[3], length: 0)
        device.publishUsed()
        try! driver.reapAllUsed { _ in }
        try! driver.add(readable: [buffer(7)], writable: [], token: 4)
        return [fresh, seed(areaMemory.read(at: 0, count: areaBytes))]
    }
}
