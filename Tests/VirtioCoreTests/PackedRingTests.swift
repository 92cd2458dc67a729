import Testing
import VirtioCore
import VirtioConformance

/// The packed ring (VIRTIO 1.2 §2.8): layout, wrap counters, both sides' validation of a
/// hostile peer, IN_ORDER and event suppression.
@Suite("Packed virtqueues", .tags(.ring))
struct PackedRingTests {
    static let one = [BufferSegment(address: RingHarness.page(0), length: 8)]

    /// One request through both sides: add, pop, complete with `length`, reap.
    static func roundTrip(_ h: inout PackedRingHarness, token: UInt64, writable: UInt32 = 0, length: UInt32 = 0) throws {
        let w = writable > 0 ? [BufferSegment(address: RingHarness.page(1), length: writable)] : []
        try h.driver.add(readable: one, writable: w, token: token)
        let chain = try #require(try h.device.popAvailable())
        h.device.addUsed(chain, length: length)
        h.device.publishUsed()
        let used = try #require(try h.driver.reapUsed())
        #expect(used == UsedBuffer(token: token, writtenLength: length))
    }

    // MARK: layout

    @Test("PKD-DEF-01, PKD-DEF-02, PKD-DEF-03, PKD-EVT-01: sizes, alignments, descriptor and event-area layout")
    func layout() throws {
        #expect(PackedRingLayout(queueSize: 0) == nil)
        #expect(PackedRingLayout(queueSize: 32769) == nil)
        for n in [1, 3, 100, 32768] {
            let l = try #require(PackedRingLayout(queueSize: n))
            #expect(l.descriptorRingSize == 16 * n)
            #expect(l.contiguousOffsets == (0, 16 * n, 16 * n + 4, 16 * n + 8))
        }
        #expect(PackedRingLayout.descriptorRingAlignment == 16 && PackedRingLayout.eventAreaAlignment == 4)
        let h = PackedRingHarness(queueSize: 4)
        #expect(h.region.read(at: RingHarness.ringBase, count: 72).allSatisfy { $0 == 0 }, "the ring starts out zero-filled")
        h.ring.descriptorRing.store(PackedDescriptor(address: 0x1122_3344_5566_7788, length: 0x99AA_BBCC, id: 0xDDEE,
                                                     flags: PackedDescriptorFlags(rawValue: 0x8082)), at: 1, publishing: true)
        #expect(h.region.read(at: RingHarness.ringBase + 16, count: 16)
                == [0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0xCC, 0xBB, 0xAA, 0x99, 0xEE, 0xDD, 0x82, 0x80])
        h.ring.driverEventArea.mode = .descriptor(PackedRingPosition(slot: 3, wrapCounter: true))
        #expect(h.region.read(at: RingHarness.ringBase + 64, count: 4) == [0x03, 0x80, 0x02, 0x00])
        h.ring.deviceEventArea.mode = .disable
        #expect(h.region.read(at: RingHarness.ringBase + 68, count: 4) == [0, 0, 0x01, 0x00])
    }

    @Test("PKD-DRV-01: a device refuses misaligned areas")
    func misaligned() {
        let h = PackedRingHarness(queueSize: 4)
        let l = h.layout
        #expect(throws: RingSetupError.misaligned(.descriptorRing, address: RingHarness.ringBase + 8)) {
            _ = try PackedDeviceQueue(queueSize: 4, addresses: PackedRingAddresses(descriptorRing: RingHarness.ringBase + 8, driverEventArea: 0x3000,
                                                                                   deviceEventArea: 0x3004),
                                      memory: h.region.identityTranslator, features: [.version1, .ringPacked])
        }
        #expect(throws: RingSetupError.misaligned(.driverEventArea, address: 0x3002)) {
            _ = try PackedDeviceQueue(queueSize: 4, addresses: PackedRingAddresses(descriptorRing: RingHarness.ringBase, driverEventArea: 0x3002,
                                                                                   deviceEventArea: 0x3004),
                                      memory: h.region.identityTranslator, features: [.version1, .ringPacked])
        }
        #expect(throws: RingSetupError.invalidQueueSize(0)) {
            _ = try PackedDeviceQueue(queueSize: 0, addresses: h.addresses, memory: h.region.identityTranslator, features: [])
        }
        _ = l
    }

    // MARK: wrap counters

    @Test("PKD-DEF-04: golden flag sequences over three laps with N = 3")
    func goldenFlags() throws {
        var h = PackedRingHarness(queueSize: 3)
        var seen: [[UInt16]] = []
        for lap in 0..<3 {
            for i in 0..<3 {
                try h.driver.add(readable: Self.one, writable: [], token: UInt64(lap * 3 + i))
            }
            seen.append(h.slotFlags)
            for _ in 0..<3 {
                let chain = try #require(try h.device.popAvailable())
                h.device.addUsed(chain, length: 0)
            }
            h.device.publishUsed()
            seen.append(h.slotFlags)
            for _ in 0..<3 { _ = try #require(try h.driver.reapUsed()) }
        }
        // Lap 1 (wrap 1): available = AVAIL; used = AVAIL|USED. Lap 2 (wrap 0): available =
        // USED; used = neither. Lap 3 (wrap 1) again.
        #expect(seen == [[0x0080, 0x0080, 0x0080], [0x8080, 0x8080, 0x8080],
                         [0x8000, 0x8000, 0x8000], [0x0000, 0x0000, 0x0000],
                         [0x0080, 0x0080, 0x0080], [0x8080, 0x8080, 0x8080]])
    }

    /// Three laps of single requests and of three-descriptor lists (which straddle the wrap
    /// whenever N is not a multiple of 3), checking both sides' positions and wrap counters.
    static func laps(queueSize n: Int) throws {
        var h = PackedRingHarness(queueSize: n)
        var expected = PackedRingPosition.start
        for i in 0..<(3 * n) {
            // A readable and, when the ring has room, a writable descriptor.
            let slots = n >= 2 ? 2 : 1
            try roundTrip(&h, token: UInt64(i), writable: slots == 2 ? 8 : 0, length: slots == 2 ? UInt32(i % 9) : 0)
            expected = expected.advanced(by: slots, count: n)
            #expect(h.device.nextAvailPosition == expected && h.device.nextUsedPosition == expected)
            #expect(h.driver.nextAvailPosition == expected && h.driver.nextUsedPosition == expected)
        }
        guard n >= 3 else { return }
        let three = [BufferSegment(address: RingHarness.page(0), length: 1), BufferSegment(address: RingHarness.page(0) + 1, length: 1)]
        for i in 0..<(n + 2) {
            try h.driver.add(readable: three, writable: [BufferSegment(address: RingHarness.page(1), length: 4)], token: UInt64(i))
            let chain = try #require(try h.device.popAvailable())
            #expect(chain.segmentCount == 3 && chain.readableLength == 2 && chain.writableLength == 4)
            h.device.addUsed(chain, length: 3)
            h.device.publishUsed()
            do { let value = try h.driver.reapUsed()
            #expect(value == UsedBuffer(token: UInt64(i), writtenLength: 3)) }
            expected = expected.advanced(by: 3, count: n)
            #expect(h.device.nextAvailPosition == expected && h.driver.nextUsedPosition == expected)
        }
    }

    @Test("PKD-DEF-04, PKD-DEF-01: wrap-counter transitions at every queue size from 1 to 64")
    func wrapEverySize() throws {
        for n in 1...64 { try Self.laps(queueSize: n) }
    }

    @Test("PKD-DEF-04, PKD-DEF-01: wrap-counter transitions at queue size 32768")
    func wrapLargest() throws {
        try Self.laps(queueSize: 32768)
    }

    @Test("PKD-DEV-03, GHT-PKD-01: a zeroed ring and stale slots of the previous lap are not consumed")
    func notAvailable() throws {
        var h = PackedRingHarness(queueSize: 4)
        do { let value = try h.device.popAvailable()
        #expect(value == nil, "zeroed ring") }
        for i in 0..<4 { try Self.roundTrip(&h, token: UInt64(i)) }
        // Every slot now holds a used descriptor of lap 1: nothing is available in lap 2.
        do { let value = try h.device.popAvailable()
        #expect(value == nil) }
        // A slot marked available for lap 1 (stale) in lap 2 is not available either.
        h.writeAvailable(0, id: 0, wrap: true)
        do { let value = try h.device.popAvailable()
        #expect(value == nil) }
        do { let broken = h.device.isBroken; #expect(!broken) }
        h.writeAvailable(0, id: 0, wrap: false)
        do { let value = try h.device.popAvailable()?.headIndex
        #expect(value == 0) }
    }

    // MARK: device-side validation

    /// Pops once, expecting `expected`, and checks the broken state.
    func expectBroken(_ h: inout PackedRingHarness, _ expected: VirtqueueError, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(throws: expected, sourceLocation: sourceLocation) { _ = try h.device.popAvailable() }
        #expect(h.device.failure == expected, sourceLocation: sourceLocation)
        #expect(throws: expected, sourceLocation: sourceLocation) { _ = try h.device.popAvailable() }
        #expect(h.status.status.contains(.deviceNeedsReset), sourceLocation: sourceLocation)
        do { let value = h.device.needsNotification()
        #expect(!value, sourceLocation: sourceLocation) }
    }

    @Test("GHT-PKD-02, PKD-DEF-06: a buffer id at or above N breaks the queue")
    func idOutOfRange() {
        var h = PackedRingHarness(queueSize: 5)
        h.writeAvailable(0, id: 5)
        expectBroken(&h, .bufferIdOutOfRange(5))
    }

    @Test("GHT-PKD-03: a buffer id made available again while in flight breaks the queue")
    func idInFlight() throws {
        var h = PackedRingHarness(queueSize: 4)
        h.writeAvailable(0, id: 2)
        h.writeAvailable(1, id: 2)
        _ = try #require(try h.device.popAvailable())
        expectBroken(&h, .headInFlight(2))
    }

    @Test("GHT-PKD-04, PKD-DEF-06, PKD-DRV-07: a later descriptor of a list that is not available breaks the queue")
    func laterNotAvailable() {
        var h = PackedRingHarness(queueSize: 4)
        h.writeAvailable(0, id: 0, flags: .next)
        h.writeAvailable(1, id: 0, ownership: .used(wrapCounter: true))   // looks used, not available
        expectBroken(&h, .listDescriptorNotAvailable(slot: 1))
        // Straddling the wrap: slot 0 belongs to lap 2 there, so lap-1 bits are wrong.
        var w = PackedRingHarness(queueSize: 2)
        w.writeAvailable(1, id: 0, flags: .next)
        w.writeAvailable(0, id: 0, wrap: true)
        w.device.reset(availPosition: PackedRingPosition(slot: 1, wrapCounter: true), usedPosition: .start)
        expectBroken(&w, .listDescriptorNotAvailable(slot: 0))
    }

    @Test("GHT-PKD-05, PKD-DRV-04: a list longer than the ring (every slot NEXT) breaks the queue")
    func listTooLong() {
        var h = PackedRingHarness(queueSize: 3)
        for i in 0..<3 { h.writeAvailable(i, id: 0, flags: .next) }
        expectBroken(&h, .chainTooLong(limit: 3))
    }

    @Test("GHT-PKD-06, PKD-IND-01: INDIRECT inside a NEXT list, with NEXT, or not negotiated breaks the queue")
    func indirectRules() {
        let features: VirtioFeatures = [.version1, .ringPacked, .indirectDescriptors]
        var h = PackedRingHarness(queueSize: 4, features: features)
        h.writeAvailable(0, id: 0, flags: .next)
        h.writeAvailable(1, address: RingHarness.indirectBase, length: 32, id: 0, flags: .indirect)
        expectBroken(&h, .indirectInList)
        var n = PackedRingHarness(queueSize: 4, features: features)
        n.writeAvailable(0, address: RingHarness.indirectBase, length: 32, id: 0, flags: [.indirect, .next])
        expectBroken(&n, .indirectWithNext)
        var f = PackedRingHarness(queueSize: 4)
        f.writeAvailable(0, address: RingHarness.indirectBase, length: 32, id: 0, flags: .indirect)
        expectBroken(&f, .indirectNotNegotiated)
        for (length, error) in [(UInt32(0), VirtqueueError.invalidIndirectLength(0)), (24, .invalidIndirectLength(24)),
                                (16 * 5, .indirectTableTooLarge(entries: 5, limit: 4))] {
            var l = PackedRingHarness(queueSize: 4, features: features)
            l.writeAvailable(0, address: RingHarness.indirectBase, length: length, id: 0, flags: .indirect)
            expectBroken(&l, error)
        }
    }

    @Test("PKD-DEF-07, GHT-PKD-06: in indirect entries only WRITE counts; ids, other flags and the INDIRECT descriptor's WRITE are ignored")
    func indirectJunk() throws {
        var h = PackedRingHarness(queueSize: 4, features: [.version1, .ringPacked, .indirectDescriptors])
        h.writeIndirectTable(at: RingHarness.indirectBase, [
            PackedDescriptor(address: RingHarness.page(0), length: 10, id: 0xBEEF, flags: PackedDescriptorFlags(rawValue: 0x8085)),
            PackedDescriptor(address: RingHarness.page(1), length: 20, id: 7, flags: PackedDescriptorFlags(rawValue: 0x0007)),
        ])
        h.writeAvailable(0, address: RingHarness.indirectBase, length: 32, id: 3, flags: [.indirect, .write])
        let chain = try #require(try h.device.popAvailable())
        #expect(chain.headIndex == 3)
        #expect(chain.segments.array == [ChainSegment(address: RingHarness.page(0), length: 10, isWritable: false),
                                         ChainSegment(address: RingHarness.page(1), length: 20, isWritable: true)])
        h.device.addUsed(chain, length: 20)
        #expect(h.device.nextUsedPosition.slot == 1, "an indirect list takes one slot")
    }

    @Test("GHT-VAL-07, PKD-DRV-05: a readable descriptor after a writable one breaks the queue")
    func readableAfterWritable() {
        var h = PackedRingHarness(queueSize: 4)
        h.writeAvailable(0, id: 0, flags: [.write, .next])
        h.writeAvailable(1, id: 0)
        expectBroken(&h, .readableAfterWritable)
    }

    @Test("GHT-VAL-08: a list whose lengths add up to more than 2^32 breaks the queue")
    func totalOverflow() {
        var h = PackedRingHarness(queueSize: 4)
        h.writeAvailable(0, length: .max, id: 0, flags: .next)
        h.writeAvailable(1, length: 2, id: 0)
        expectBroken(&h, .totalLengthOverflow)
    }

    @Test("PKD-DEF-06, PKD-DEV-01: lists of different lengths completed out of order are retired by their own lengths")
    func outOfOrder() throws {
        var h = PackedRingHarness(queueSize: 8)
        let seg = { (i: Int) in BufferSegment(address: RingHarness.page(i), length: 4) }
        try h.driver.add(readable: [seg(0), seg(1), seg(2)], writable: [], token: 10)   // 3 slots
        try h.driver.add(readable: [seg(3)], writable: [seg(4)], token: 11)            // 2 slots
        try h.driver.add(readable: [seg(5)], writable: [], token: 12)                  // 1 slot
        let a = try #require(try h.device.popAvailable())
        let b = try #require(try h.device.popAvailable())
        let c = try #require(try h.device.popAvailable())
        #expect([a.segmentCount, b.segmentCount, c.segmentCount] == [3, 2, 1])
        for chain in [c, a, b] { h.device.addUsed(chain, length: chain.writableLength > 0 ? 2 : 0) }
        h.device.publishUsed()
        // Used descriptors land in completion order at slots 0, 1 and 4.
        #expect(h.ring.descriptorRing.load(0).id == c.headIndex)
        #expect(h.ring.descriptorRing.load(1).id == a.headIndex)
        #expect(h.ring.descriptorRing.load(4).id == b.headIndex)
        var tokens: [UInt64] = []
        try h.driver.reapAllUsed { tokens.append($0.token) }
        #expect(tokens == [12, 10, 11])
        #expect(h.driver.freeDescriptorCount == 8 && h.driver.outstandingCount == 0)
        #expect(h.driver.nextUsedPosition == PackedRingPosition(slot: 6, wrapCounter: true))
    }

    @Test("PKD-DEF-08, GHT-PKD-10: with IN_ORDER the device writes one used descriptor per batch and the driver retires all of it")
    func inOrderBatch() throws {
        var h = PackedRingHarness(queueSize: 8, features: [.version1, .ringPacked, .inOrder])
        for i in 0..<4 {
            try h.driver.add(readable: Self.one, writable: [BufferSegment(address: RingHarness.page(1 + i), length: 16)], token: UInt64(i))
        }
        var chains: [DescriptorChain] = []
        while let c = try h.device.popAvailable() { chains.append(c) }
        for (i, c) in chains.enumerated() { h.device.addUsed(c, length: i == 3 ? 5 : 16) }
        #expect(!h.ring.descriptorRing.load(0).flags.isUsed(wrapCounter: true), "nothing written before the batch is published")
        h.device.publishUsed()
        #expect(h.ring.descriptorRing.load(0).flags.isUsed(wrapCounter: true))
        #expect(h.ring.descriptorRing.load(0).id == chains[3].headIndex, "the batch carries the last buffer's id")
        #expect(!h.ring.descriptorRing.load(1).flags.isUsed(wrapCounter: true), "one used descriptor for the batch")
        var used: [UsedBuffer] = []
        try h.driver.reapAllUsed { used.append($0) }
        #expect(used == [UsedBuffer(token: 0, writtenLength: 16), UsedBuffer(token: 1, writtenLength: 16),
                         UsedBuffer(token: 2, writtenLength: 16), UsedBuffer(token: 3, writtenLength: 5)])
        // A buffer not fully used ends a batch: the next one gets its own descriptor.
        for i in 0..<2 { try h.driver.add(readable: Self.one, writable: [BufferSegment(address: RingHarness.page(1), length: 16)], token: UInt64(10 + i)) }
        let x = try #require(try h.device.popAvailable()), y = try #require(try h.device.popAvailable())
        h.device.addUsed(x, length: 3)
        h.device.addUsed(y, length: 16)
        h.device.publishUsed()
        used = []
        try h.driver.reapAllUsed { used.append($0) }
        #expect(used == [UsedBuffer(token: 10, writtenLength: 3), UsedBuffer(token: 11, writtenLength: 16)])
    }

    // MARK: driver-side validation

    func expectDriverBroken(_ h: inout PackedRingHarness, _ expected: DriverQueueError, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(throws: expected, sourceLocation: sourceLocation) { _ = try h.driver.reapUsed() }
        #expect(h.driver.failure == expected, sourceLocation: sourceLocation)
        #expect(throws: expected, sourceLocation: sourceLocation) { _ = try h.driver.reapUsed() }
        #expect(throws: expected, sourceLocation: sourceLocation) { try h.driver.add(readable: Self.one, writable: [], token: 9) }
    }

    @Test("GHT-PKD-07, USD-DEF-02: a used id out of range, one never made available, or a length beyond the buffer breaks the queue")
    func hostileDevice() throws {
        var h = PackedRingHarness(queueSize: 4)
        try h.driver.add(readable: Self.one, writable: [BufferSegment(address: RingHarness.page(1), length: 8)], token: 1)
        h.writeUsed(0, id: 4, length: 0)
        expectDriverBroken(&h, .usedIdOutOfRange(4))
        var n = PackedRingHarness(queueSize: 4)
        try n.driver.add(readable: Self.one, writable: [], token: 1)
        n.writeUsed(0, id: 1, length: 0)   // ids are handed out from 0
        expectDriverBroken(&n, .usedIdNotOutstanding(1))
        var l = PackedRingHarness(queueSize: 4)
        let id = try l.driver.add(readable: Self.one, writable: [BufferSegment(address: RingHarness.page(1), length: 8)], token: 1)
        l.writeUsed(0, id: id, length: 9)
        expectDriverBroken(&l, .usedLengthExceedsBuffer(id: UInt32(id), length: 9, capacity: 8))
    }

    @Test("GHT-PKD-07, GHT-PKD-10, PKD-DEF-05: a used descriptor without WRITE reports 0 bytes whatever its len; nothing outstanding reads nothing")
    func usedWithoutWrite() throws {
        var h = PackedRingHarness(queueSize: 4)
        // A device marking slots used with nothing outstanding is not looked at.
        h.writeUsed(0, id: 0, length: 100)
        do { let value = try h.driver.reapUsed()
        #expect(value == nil) }
        #expect(!h.driver.isBroken)
        var r = PackedRingHarness(queueSize: 4)
        let id = try r.driver.add(readable: Self.one, writable: [BufferSegment(address: RingHarness.page(1), length: 8)], token: 5)
        r.writeUsed(0, id: id, length: 0xFFFF_FFFF, wrote: false)
        do { let value = try r.driver.reapUsed()
        #expect(value == UsedBuffer(token: 5, writtenLength: 0)) }
        // Our device sets WRITE exactly when the buffer has a writable part.
        var d = PackedRingHarness(queueSize: 4)
        try Self.roundTrip(&d, token: 1)
        #expect(!d.ring.descriptorRing.load(0).flags.contains(.write))
        try Self.roundTrip(&d, token: 2, writable: 8, length: 0)
        #expect(d.ring.descriptorRing.load(1).flags.contains(.write))
    }

    @Test("PKD-DRV-06, GHT-PKD-09: a list longer than the free slots is refused and nothing of it is written")
    func noRoom() throws {
        var h = PackedRingHarness(queueSize: 4)
        try h.driver.add(readable: Self.one, writable: [], token: 1)
        try h.driver.add(readable: Self.one, writable: [], token: 2)
        let before = h.slotFlags
        let three = Array(repeating: BufferSegment(address: RingHarness.page(0), length: 1), count: 3)
        #expect(throws: DriverQueueError.queueFull) { try h.driver.add(readable: three, writable: [], token: 3) }
        #expect(throws: DriverQueueError.totalLengthOverflow) {
            try h.driver.add(readable: [BufferSegment(address: 0, length: .max), BufferSegment(address: 0, length: 2)], writable: [], token: 4)
        }
        #expect(h.slotFlags == before)
        #expect(h.driver.freeDescriptorCount == 2)
    }

    @Test("PKD-DEV-02, PKD-DEV-04, PKD-DRV-02: the device writes only writable buffers and each used slot once; the driver leaves published slots alone")
    func storeDiscipline() throws {
        var h = PackedRingHarness(queueSize: 8)
        let request = RingHarness.page(0), reply = RingHarness.page(1)
        h.region.write(Array(repeating: 0xAB, count: 16), at: request)
        try h.driver.add(readable: [BufferSegment(address: request, length: 16)], writable: [BufferSegment(address: reply, length: 8)], token: 1)
        let published = h.region.read(at: RingHarness.ringBase, count: 32)
        // PKD-DRV-02: adding more lists does not touch the slots already published.
        try h.driver.add(readable: Self.one, writable: [], token: 2)
        #expect(h.region.read(at: RingHarness.ringBase, count: 32) == published)
        let chain = try #require(try h.device.popAvailable())
        var writer = h.device.writer(for: chain)
        #expect(throws: ChainAccessError.self) { try writer.write(contentsOf: [UInt8](repeating: 1, count: 9)) }
        #expect(h.region.read(at: request, count: 16) == Array(repeating: 0xAB, count: 16), "PKD-DEV-02: the readable buffer is untouched")
        h.device.addUsed(chain, length: 8)
        h.device.publishUsed()
        let used = h.region.read(at: RingHarness.ringBase, count: 16)
        // PKD-DEV-04: the used slot is not written again by later pops and completions.
        let other = try #require(try h.device.popAvailable())
        h.device.addUsed(other, length: 0)
        h.device.publishUsed()
        _ = h.device.needsNotification()
        #expect(h.region.read(at: RingHarness.ringBase, count: 16) == used)
    }

    // MARK: notifications

    @Test("PKD-EVT-01, PKD-EVT-02, PKD-SUP-03: kicks and used notifications under ENABLE, DISABLE and DESC")
    func suppression() throws {
        var h = PackedRingHarness(queueSize: 4)
        // Without EVENT_IDX: ENABLE and DISABLE; DESC (invalid there) reads as ENABLE.
        try h.driver.add(readable: Self.one, writable: [], token: 1)
        do { let value = h.driver.kickNeeded()
        #expect(value) }
        do { let value = h.driver.kickNeeded()
        #expect(!value, "nothing new") }
        h.device.disableNotifications()
        try h.driver.add(readable: Self.one, writable: [], token: 2)
        do { let value = h.driver.kickNeeded()
        #expect(!value) }
        do { let value = h.device.enableNotifications()
        #expect(value, "the re-check finds what arrived meanwhile") }
        for _ in 0..<2 { h.device.addUsed(try #require(try h.device.popAvailable()), length: 0) }
        do { let value = h.device.needsNotification()
        #expect(value) }
        h.driver.disableUsedNotifications()
        try h.driver.add(readable: Self.one, writable: [], token: 3)
        h.device.addUsed(try #require(try h.device.popAvailable()), length: 0)
        do { let value = h.device.needsNotification()
        #expect(!value) }
        do { let value = h.driver.enableUsedNotifications()
        #expect(value) }
        // With EVENT_IDX: DESC names the slot.
        var e = PackedRingHarness(queueSize: 4, features: [.version1, .ringPacked, .eventIndex])
        do { let value = e.device.enableNotifications()
        #expect(!value) }
        #expect(e.ring.deviceEventArea.mode == .descriptor(.start))
        try e.driver.add(readable: Self.one, writable: [], token: 1)
        do { let value = e.driver.kickNeeded()
        #expect(value, "slot 0 of lap 1 was made available") }
        e.ring.deviceEventArea.mode = .descriptor(PackedRingPosition(slot: 2, wrapCounter: true))
        try e.driver.add(readable: Self.one, writable: [], token: 2)
        do { let value = e.driver.kickNeeded()
        #expect(!value, "slot 1 is not the event") }
        try e.driver.add(readable: Self.one, writable: [], token: 3)
        do { let value = e.driver.kickNeeded()
        #expect(value, "slot 2 is") }
        do { let value = e.driver.enableUsedNotifications()
        #expect(!value) }
        e.ring.driverEventArea.mode = .descriptor(PackedRingPosition(slot: 1, wrapCounter: true))
        e.device.addUsed(try #require(try e.device.popAvailable()), length: 0)
        do { let value = e.device.needsNotification()
        #expect(!value, "slot 0 used, the event is slot 1") }
        e.device.addUsed(try #require(try e.device.popAvailable()), length: 0)
        do { let value = e.device.needsNotification()
        #expect(value) }
        // Across the wrap: an event in the next lap is not passed by this one.
        e.ring.driverEventArea.mode = .descriptor(PackedRingPosition(slot: 0, wrapCounter: false))
        e.device.addUsed(try #require(try e.device.popAvailable()), length: 0)
        do { let value = e.device.needsNotification()
        #expect(!value) }
    }

    // MARK: lifecycle

    @Test("QRST-DEV-02, QRST-DRV-02: a reset returns both sides to slot 0 with wrap counter 1")
    func reset() throws {
        var h = PackedRingHarness(queueSize: 3)
        for i in 0..<4 { try Self.roundTrip(&h, token: UInt64(i)) }
        try h.driver.add(readable: Self.one, writable: [], token: 9)
        _ = try #require(try h.device.popAvailable())
        h.device.reset()
        #expect(h.device.nextAvailPosition == .start && h.device.nextUsedPosition == .start && h.device.inFlightCount == 0)
        #expect(h.driver.detachAllOutstanding() == [9])
        #expect(h.driver.nextAvailPosition == .start)
        try Self.roundTrip(&h, token: 20)
        #expect(h.device.vringBase == 0x8001_8001)
    }

    @Test("GHT-IOVA-06: a packed list given back is popped again, whole")
    func giveBack() throws {
        var h = PackedRingHarness(queueSize: 3)
        try Self.roundTrip(&h, token: 1)
        let two = [BufferSegment(address: RingHarness.page(0), length: 1), BufferSegment(address: RingHarness.page(0), length: 2)]
        try h.driver.add(readable: two, writable: [], token: 2)   // slots 1, 2
        let chain = try #require(try h.device.popAvailable())
        #expect(h.device.nextAvailPosition == PackedRingPosition(slot: 0, wrapCounter: false))
        h.device.giveBack(chain)
        #expect(h.device.nextAvailPosition == PackedRingPosition(slot: 1, wrapCounter: true))
        let again = try #require(try h.device.popAvailable())
        #expect(again.segments.array == chain.segments.array && again.headIndex == chain.headIndex)
    }

    @Test("GHT-CHN-04: long packed lists use overflow blocks and wait when the arena is full")
    func longLists() throws {
        var h = PackedRingHarness(queueSize: 16, overflowBlocks: 2)
        let segs = (0..<9).map { BufferSegment(address: RingHarness.page($0), length: UInt32($0 + 1)) }
        try h.driver.add(readable: segs, writable: [], token: 1)
        try h.driver.add(readable: Array(segs.prefix(6)), writable: [], token: 2)
        let a = try #require(try h.device.popAvailable())
        #expect(a.segments.array.map(\.length) == (1...9).map(UInt32.init))
        do { let value = try h.device.popAvailable()
        #expect(value == nil, "no overflow block left for the second list") }
        h.device.addUsed(a, length: 0)
        let b = try #require(try h.device.popAvailable())
        #expect(b.segments.array.map(\.length) == (1...6).map(UInt32.init))
    }
}
