import Testing
import VirtioCore
import VirtioConformance

/// Driver → device → driver round trips of random chains, checked byte for byte.
@Suite("Random round trips", .tags(.ring))
struct RoundTripTests {
    /// What the driver posted for one chain.
    struct Posted {
        var request: [UInt8]
        var writable: [BufferSegment]
    }

    /// The device's reply to a request: deterministic in the request, as long as the chain's
    /// writable capacity allows (the used length says how much was written).
    static func reply(to request: [UInt8], head: UInt16, capacity: Int) -> [UInt8] {
        let length = min(capacity, request.count + 7)
        return (0..<length).map { i in
            (request.isEmpty ? UInt8(truncatingIfNeeded: head) : request[i % request.count]) ^ 0x5A ^ UInt8(truncatingIfNeeded: i)
        }
    }

    /// Random segments laid out in the 16 KiB slot `slot` of the payload area.
    static func segments(count: Int, slot: Int, offset: inout Int, using random: inout TestRandom) -> [BufferSegment] {
        (0..<count).map { _ in
            let length = Int.random(in: 0...300, using: &random)
            let gap = Int.random(in: 0...5, using: &random)
            defer { offset += length + gap }
            return BufferSegment(address: RingHarness.payloadBase + UInt64(slot * 16384 + offset + gap), length: UInt32(length))
        }
    }

    /// Runs `chains` random chains through `h`, with random batches, layouts and split points.
    /// (The device queue is noncopyable: the two sides come as two `inout` parts of one harness.)
    static func run<Driver: DriverQueue, Device: DeviceQueue<LoggingTranslator<IdentityTranslator>> & ~Copyable>(
        _ driver: inout Driver, _ device: inout Device, region: GuestMemoryRegion, queueSize: Int,
        chains: Int, seed: UInt64, indirect: Bool) throws {
        var random = TestRandom(seed: seed)
        var posted: [UInt64: Posted] = [:]
        var nextToken: UInt64 = 0
        var completed = 0
        let maxOutstanding = queueSize
        while completed < chains {
            // Driver: a random batch.
            let batch = Int.random(in: 1...4, using: &random)
            for _ in 0..<batch where nextToken < UInt64(chains) && posted.count < maxOutstanding {
                let slot = Int(nextToken % 64)
                var offset = 0
                var readableCount = Int.random(in: 0...4, using: &random)
                var writableCount = Int.random(in: 0...4, using: &random)
                if readableCount + writableCount == 0 { readableCount = 1 }
                let layout: ChainLayout = indirect && Bool.random(using: &random) ? .indirect : .direct
                let free = driver.freeDescriptorCount
                if free == 0 { break }
                if layout == .direct && readableCount + writableCount > free {
                    readableCount = min(readableCount, free)
                    writableCount = free - readableCount
                }
                let readable = segments(count: readableCount, slot: slot, offset: &offset, using: &random)
                let writable = segments(count: writableCount, slot: slot, offset: &offset, using: &random)
                var request: [UInt8] = []
                for s in readable {
                    let bytes = (0..<Int(s.length)).map { _ in UInt8.random(in: 0...255, using: &random) }
                    region.write(bytes, at: s.address)
                    request += bytes
                }
                for s in writable { region.write([UInt8](repeating: 0xEE, count: Int(s.length)), at: s.address) }
                do {
                    try driver.add(readable: readable, writable: writable, token: nextToken, layout: layout)
                } catch .queueFull {
                    break   // no indirect table free: wait for completions, as a driver would
                }
                posted[nextToken] = Posted(request: request, writable: writable)
                nextToken += 1
            }
            driver.publish()
            // Device: everything available, with random read and write sizes.
            while let chain = try device.popAvailable() {
                var reader = device.reader(for: chain)
                var request: [UInt8] = []
                while reader.remaining > 0 {
                    let n = Int.random(in: 1...max(1, min(reader.remaining, 97)), using: &random)
                    request += try reader.readBytes(n)
                }
                let extra = try reader.read(into: UnsafeMutableRawBufferPointer(start: nil, count: 0))
                #expect(extra == 0)
                let answer = reply(to: request, head: chain.headIndex, capacity: Int(chain.writableLength))
                var writer = device.writer(for: chain)
                var at = 0
                while at < answer.count {
                    let n = Int.random(in: 1...(answer.count - at), using: &random)
                    try writer.write(contentsOf: Array(answer[at..<(at + n)]))
                    at += n
                }
                device.addUsed(chain, length: writer.usedLength)
            }
            device.publishUsed()
            // Driver: check every completion against the model.
            while let used = try driver.reapUsed() {
                let removed = posted.removeValue(forKey: used.token)
                let p = try #require(removed)
                let capacity = p.writable.reduce(0) { $0 + Int($1.length) }
                var written: [UInt8] = []
                for s in p.writable { written += region.read(at: s.address, count: Int(s.length)) }
                #expect(Int(used.writtenLength) == min(capacity, p.request.count + 7))
                let expectedBytes = reply(to: p.request, head: 0, capacity: capacity)
                if !p.request.isEmpty {
                    #expect(Array(written.prefix(Int(used.writtenLength))) == expectedBytes)
                }
                #expect(written.dropFirst(Int(used.writtenLength)).allSatisfy { $0 == 0xEE }, "USD-DEV-02: nothing beyond the used length")
                completed += 1
            }
        }
        #expect(posted.isEmpty)
        #expect(driver.outstandingCount == 0)
        #expect(device.inFlightCount == 0)
        #expect(driver.freeDescriptorCount == queueSize)
    }

    @Test("GHT-CHN-02, GHT-CHN-03, FRM-DEV-01: thousands of random direct chains, byte for byte", arguments: [8, 16, 64])
    func directChains(queueSize: Int) throws {
        var h = RingHarness(queueSize: queueSize)
        try Self.run(&h.driver, &h.device, region: h.region, queueSize: h.queueSize, chains: 1500, seed: UInt64(queueSize), indirect: false)
    }

    @Test("GHT-CHN-01, IND-DEF-01: thousands of random chains, direct and indirect, byte for byte")
    func indirectChains() throws {
        var h = RingHarness(queueSize: 16, features: [.version1, .indirectDescriptors], indirectTables: 16, entriesPerTable: 16)
        try Self.run(&h.driver, &h.device, region: h.region, queueSize: h.queueSize, chains: 2000, seed: 77, indirect: true)
    }

    @Test("PKD-DEF-01, PKD-DEF-06, PKD-DEV-05: thousands of random direct lists over packed rings of any size, byte for byte",
          arguments: [1, 3, 8, 13, 64])
    func packedDirectLists(queueSize: Int) throws {
        var h = PackedRingHarness(queueSize: queueSize)
        try Self.run(&h.driver, &h.device, region: h.region, queueSize: h.queueSize, chains: 1500, seed: UInt64(queueSize) &+ 100, indirect: false)
    }

    @Test("PKD-DEF-07: thousands of random packed lists, direct and indirect, byte for byte")
    func packedIndirectLists() throws {
        var h = PackedRingHarness(queueSize: 12, features: [.version1, .ringPacked, .indirectDescriptors],
                                  indirectTables: 12, entriesPerTable: 16)
        try Self.run(&h.driver, &h.device, region: h.region, queueSize: h.queueSize, chains: 2000, seed: 78, indirect: true)
    }

    @Test("PKD-DEF-08: thousands of random packed lists with IN_ORDER batching, byte for byte")
    func packedInOrderLists() throws {
        var h = PackedRingHarness(queueSize: 16, features: [.version1, .ringPacked, .inOrder, .indirectDescriptors],
                                  indirectTables: 16, entriesPerTable: 16)
        try Self.run(&h.driver, &h.device, region: h.region, queueSize: h.queueSize, chains: 2000, seed: 79, indirect: true)
    }

    @Test("AVL-DEF-02: indices wrap at 65536 on both sides (start near 65535)")
    func wraparound() throws {
        var h = RingHarness(queueSize: 4)
        // Walk both indices to 65530 with trivial chains.
        for i in 0..<65530 {
            try h.driver.add(readable: [BufferSegment(address: RingHarness.page(0), length: 1)], writable: [], token: UInt64(i))
            h.driver.publish()
            let chain = try #require(try h.device.popAvailable())
            h.device.addUsed(chain, length: 0)
            h.device.publishUsed()
            #expect(try h.driver.reapUsed()?.token == UInt64(i))
        }
        #expect(h.ring.availRing.loadIndex() == 65530)
        #expect(h.ring.usedRing.loadIndex() == 65530)
        try Self.run(&h.driver, &h.device, region: h.region, queueSize: h.queueSize, chains: 200, seed: 5, indirect: false)
        #expect(h.ring.usedRing.loadIndex() < 1000, "the used index wrapped")
    }
}
