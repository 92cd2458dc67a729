import Testing
import VirtioCore

/// Hand-built malformed rings: each rule of Spec/transport.md §4 with a ring that breaks it.
/// Every test checks the exact error, that the queue stays broken, that DEVICE_NEEDS_RESET is
/// set, and that a second queue of the same device keeps working.
@Suite("Device-side validation of a hostile driver", .tags(.ring, .hostile))
struct DeviceValidationTests {
    /// Pops once from `h`, expecting `expected`; then checks the broken state and that an
    /// independent queue sharing the status cell still serves a chain.
    func expectBroken(_ h: inout RingHarness, _ expected: VirtqueueError, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(throws: expected, sourceLocation: sourceLocation) { _ = try h.device.popAvailable() }
        #expect(h.device.isBroken == true, sourceLocation: sourceLocation)
        #expect(h.device.failure == expected, sourceLocation: sourceLocation)
        // GHT-BRK-01: the same error again, on every later call.
        #expect(throws: expected, sourceLocation: sourceLocation) { _ = try h.device.popAvailable() }
        #expect(h.status.status.contains(.deviceNeedsReset), sourceLocation: sourceLocation)
        // GHT-BRK-02: nothing is published by a broken queue.
        let usedBefore = h.ring.usedRing.loadIndex()
        h.device.publishUsed()
        #expect(h.ring.usedRing.loadIndex() == usedBefore, sourceLocation: sourceLocation)
        let owed = h.device.needsNotification()
        #expect(!owed, sourceLocation: sourceLocation)
        // GHT-BRK-03 (another queue of the device goes on) needs a device of several queues:
        // DeviceResetRuleTests checks it over a session.
    }

    @Test("GHT-VAL-01, AVL-DEF-02: the available index running more than N ahead breaks the queue")
    func availTooFar() {
        var h = RingHarness(queueSize: 8)
        h.ring.availRing.storeIndex(9)
        expectBroken(&h, .availIndexTooFarAhead(availIndex: 9, lastSeen: 0))
    }

    @Test("GHT-VAL-01, AVL-DRV-01: the available index moving backwards breaks the queue")
    func availBackwards() throws {
        var h = RingHarness(queueSize: 8)
        h.writeDescriptor(0, address: RingHarness.page(0), length: 8)
        h.makeAvailable([0])
        let chain = try #require(try h.device.popAvailable())
        h.device.addUsed(chain, length: 0)
        h.ring.availRing.storeIndex(0)   // "unexposes" a buffer: 0 - 1 wraps to 65535
        expectBroken(&h, .availIndexTooFarAhead(availIndex: 0, lastSeen: 1))
    }

    @Test("GHT-VAL-01: exactly N ahead is legal")
    func availExactlyN() throws {
        var h = RingHarness(queueSize: 4)
        for i in 0..<4 { h.writeDescriptor(i, address: RingHarness.page(i), length: 8) }
        h.makeAvailable([0, 1, 2, 3])
        var popped = 0
        while try h.device.popAvailable() != nil { popped += 1 }
        #expect(popped == 4)
    }

    @Test("GHT-VAL-02, STAT-DEV-02: a head index out of range breaks the queue")
    func headOutOfRange() {
        var h = RingHarness(queueSize: 8)
        h.makeAvailable([8])
        expectBroken(&h, .headOutOfRange(8))
    }

    @Test("GHT-VAL-03: a head made available again while its chain is in flight breaks the queue")
    func headInFlight() throws {
        var h = RingHarness(queueSize: 8)
        h.writeDescriptor(2, address: RingHarness.page(0), length: 8)
        h.makeAvailable([2, 2])
        _ = try #require(try h.device.popAvailable())
        expectBroken(&h, .headInFlight(2))
    }

    @Test("GHT-VAL-04: a next link out of the descriptor table breaks the queue")
    func nextOutOfRange() {
        var h = RingHarness(queueSize: 8)
        h.writeDescriptor(0, address: RingHarness.page(0), length: 8, flags: .next, next: 8)
        h.makeAvailable([0])
        expectBroken(&h, .nextOutOfRange(next: 8, tableSize: 8))
    }

    @Test("GHT-VAL-05, FRM-DEV-02: a loop in the descriptor table ends at the queue-size bound")
    func loop() {
        var h = RingHarness(queueSize: 8)
        h.writeDescriptor(0, address: RingHarness.page(0), length: 8, flags: .next, next: 1)
        h.writeDescriptor(1, address: RingHarness.page(1), length: 8, flags: .next, next: 0)
        h.makeAvailable([0])
        expectBroken(&h, .chainTooLong(limit: 8))
    }

    @Test("GHT-VAL-05: a self-loop on the head ends at the bound")
    func selfLoop() {
        var h = RingHarness(queueSize: 16)
        h.writeDescriptor(5, address: RingHarness.page(0), length: 1, flags: .next, next: 5)
        h.makeAvailable([5])
        expectBroken(&h, .chainTooLong(limit: 16))
    }

    @Test("GHT-VAL-05, IND-DRV-03: a loop inside an indirect table ends at the bound")
    func indirectLoop() {
        var h = RingHarness(queueSize: 8, features: [.version1, .indirectDescriptors])
        let table = RingHarness.indirectBase
        h.writeIndirectTable(at: table, [Descriptor(address: RingHarness.page(0), length: 8, flags: .next, next: 1),
                                         Descriptor(address: RingHarness.page(1), length: 8, flags: .next, next: 0)])
        h.writeDescriptor(0, address: table, length: 32, flags: .indirect)
        h.makeAvailable([0])
        expectBroken(&h, .chainTooLong(limit: 8))
    }

    @Test("GHT-VAL-05: direct descriptors plus indirect entries count together")
    func directPlusIndirectTooLong() {
        var h = RingHarness(queueSize: 4, features: [.version1, .indirectDescriptors])
        let table = RingHarness.indirectBase
        h.writeIndirectTable(at: table, (0..<4).map { Descriptor(address: RingHarness.page($0), length: 8, flags: $0 < 3 ? .next : [], next: UInt16($0 + 1)) })
        h.writeDescriptor(0, address: RingHarness.page(9), length: 8, flags: .next, next: 1)
        h.writeDescriptor(1, address: table, length: 64, flags: .indirect)
        h.makeAvailable([0])
        expectBroken(&h, .chainTooLong(limit: 4))
    }

    @Test("GHT-VAL-06, IND-DRV-01: INDIRECT without VIRTIO_F_INDIRECT_DESC breaks the queue")
    func indirectNotNegotiated() {
        var h = RingHarness(queueSize: 8, features: [.version1])
        h.writeIndirectTable(at: RingHarness.indirectBase, [Descriptor(address: RingHarness.page(0), length: 8)])
        h.writeDescriptor(0, address: RingHarness.indirectBase, length: 16, flags: .indirect)
        h.makeAvailable([0])
        expectBroken(&h, .indirectNotNegotiated)
    }

    @Test("GHT-VAL-07, IND-DRV-04: INDIRECT together with NEXT breaks the queue")
    func indirectWithNext() {
        var h = RingHarness(queueSize: 8, features: [.version1, .indirectDescriptors])
        h.writeIndirectTable(at: RingHarness.indirectBase, [Descriptor(address: RingHarness.page(0), length: 8)])
        h.writeDescriptor(0, address: RingHarness.indirectBase, length: 16, flags: [.indirect, .next], next: 1)
        h.writeDescriptor(1, address: RingHarness.page(1), length: 8)
        h.makeAvailable([0])
        expectBroken(&h, .indirectWithNext)
    }

    @Test("GHT-VAL-08, IND-DRV-02: an INDIRECT descriptor inside an indirect table breaks the queue")
    func nestedIndirect() {
        var h = RingHarness(queueSize: 8, features: [.version1, .indirectDescriptors])
        let outer = RingHarness.indirectBase, inner = RingHarness.indirectBase + 0x100
        h.writeIndirectTable(at: inner, [Descriptor(address: RingHarness.page(0), length: 8)])
        h.writeIndirectTable(at: outer, [Descriptor(address: inner, length: 16, flags: .indirect)])
        h.writeDescriptor(0, address: outer, length: 16, flags: .indirect)
        h.makeAvailable([0])
        expectBroken(&h, .nestedIndirect)
    }

    @Test("GHT-VAL-09, IND-DEF-01: an indirect table of length 0 breaks the queue", arguments: [UInt32(0), 24, 17, 8])
    func indirectLength(length: UInt32) {
        var h = RingHarness(queueSize: 8, features: [.version1, .indirectDescriptors])
        h.writeIndirectTable(at: RingHarness.indirectBase, [Descriptor(address: RingHarness.page(0), length: 8),
                                                            Descriptor(address: RingHarness.page(1), length: 8)])
        h.writeDescriptor(0, address: RingHarness.indirectBase, length: length, flags: .indirect)
        h.makeAvailable([0])
        expectBroken(&h, .invalidIndirectLength(length))
    }

    @Test("GHT-VAL-10: an indirect table with more entries than the queue size breaks the queue")
    func indirectTooLarge() {
        var h = RingHarness(queueSize: 4, features: [.version1, .indirectDescriptors])
        h.writeDescriptor(0, address: RingHarness.indirectBase, length: 5 * 16, flags: .indirect)
        h.makeAvailable([0])
        expectBroken(&h, .indirectTableTooLarge(entries: 5, limit: 4))
    }

    @Test("GHT-VAL-11, FRM-DRV-01: a readable descriptor after a writable one breaks the queue")
    func readableAfterWritable() {
        var h = RingHarness(queueSize: 8)
        h.writeDescriptor(0, address: RingHarness.page(0), length: 8, flags: [.write, .next], next: 1)
        h.writeDescriptor(1, address: RingHarness.page(1), length: 8)
        h.makeAvailable([0])
        expectBroken(&h, .readableAfterWritable)
    }

    @Test("GHT-VAL-11: the readable-before-writable rule spans the step into an indirect table")
    func readableAfterWritableAcrossIndirect() {
        var h = RingHarness(queueSize: 8, features: [.version1, .indirectDescriptors])
        h.writeIndirectTable(at: RingHarness.indirectBase, [Descriptor(address: RingHarness.page(1), length: 8)])
        h.writeDescriptor(0, address: RingHarness.page(0), length: 8, flags: [.write, .next], next: 1)
        h.writeDescriptor(1, address: RingHarness.indirectBase, length: 16, flags: .indirect)
        h.makeAvailable([0])
        expectBroken(&h, .readableAfterWritable)
    }

    @Test("GHT-VAL-12, SPL-DRV-02: a chain longer than 2^32 bytes in total breaks the queue")
    func totalLengthOverflow() throws {
        var h = RingHarness(queueSize: 8)
        h.writeDescriptor(0, address: 0, length: .max, flags: .next, next: 1)
        h.writeDescriptor(1, address: 0, length: 2, flags: .next, next: 2)
        h.writeDescriptor(2, address: 0, length: 1)
        h.makeAvailable([0])
        expectBroken(&h, .totalLengthOverflow)
    }

    @Test("GHT-VAL-12: exactly 2^32 bytes in total is legal")
    func totalLengthExactlyLimit() throws {
        var h = RingHarness(queueSize: 8)
        h.writeDescriptor(0, address: 0, length: .max, flags: .next, next: 1)
        h.writeDescriptor(1, address: 0, length: 1)
        h.makeAvailable([0])
        let chain = try #require(try h.device.popAvailable())
        #expect(chain.readableLength == 1 << 32)
    }

    @Test("GHT-VAL-13, GHT-MEM-01: an indirect table outside guest memory breaks the queue")
    func indirectOutsideMemory() {
        var h = RingHarness(queueSize: 8, features: [.version1, .indirectDescriptors])
        let address = UInt64(h.region.size) - 16
        h.writeDescriptor(0, address: address, length: 32, flags: .indirect)
        h.makeAvailable([0])
        expectBroken(&h, .indirectTableFault(TranslationFault(.outOfRange, address: address, length: 32, access: .read)))
    }

    @Test("GHT-BRK-04, GHT-MEM-01, GHT-BRK-02: a segment outside guest memory faults when processed and breaks the queue")
    func segmentOutsideMemory() throws {
        var h = RingHarness(queueSize: 8)
        let address = UInt64(h.region.size) + 4096
        h.writeDescriptor(0, address: address, length: 8)
        h.makeAvailable([0])
        let chain = try #require(try h.device.popAvailable())
        var reader = h.device.reader(for: chain)
        let fault = TranslationFault(.outOfRange, address: address, length: 8, access: .read)
        #expect(throws: ChainAccessError.fault(fault)) { _ = try reader.readBytes(8) }
        h.device.fail(.memoryFault(fault))
        #expect(h.status.status.contains(.deviceNeedsReset))
        // GHT-BRK-02: the chain popped before the break is dropped, not completed.
        h.device.addUsed(chain, length: 0)
        h.device.publishUsed()
        #expect(h.ring.usedRing.loadIndex() == 0)
        #expect(throws: VirtqueueError.memoryFault(fault)) { _ = try h.device.popAvailable() }
    }

    @Test("GHT-BRK-04: processAvailable breaks the queue when its body throws")
    func processAvailableBreaks() throws {
        var h = RingHarness(queueSize: 8)
        let address = UInt64(h.region.size)
        h.writeDescriptor(0, address: RingHarness.page(0), length: 8)
        h.writeDescriptor(1, address: address, length: 8)
        h.makeAvailable([0, 1])
        #expect(throws: VirtqueueError.memoryFault(TranslationFault(.outOfRange, address: address, length: 8, access: .read))) {
            _ = try h.device.processAvailable { chain, memory throws(VirtqueueError) in
                for segment in chain.segments { _ = try memory.translate(segment) }
                return 0
            }
        }
        do { let broken = h.device.isBroken; #expect(broken) }
        #expect(h.status.status.contains(.deviceNeedsReset))
    }

    @Test("GHT-MEM-02: the device decides on its single copy even if the driver rewrites descriptors after the pop")
    func singleFetch() throws {
        var h = RingHarness(queueSize: 8)
        h.region.write([1, 2, 3, 4], at: RingHarness.page(0))
        h.writeDescriptor(0, address: RingHarness.page(0), length: 4, flags: .next, next: 1)
        h.writeDescriptor(1, address: RingHarness.page(1), length: 4, flags: .write)
        h.makeAvailable([0])
        let chain = try #require(try h.device.popAvailable())
        // A hostile driver now turns the chain into something else entirely.
        h.writeDescriptor(0, address: UInt64(h.region.size) * 2, length: .max, flags: [.write, .indirect], next: 7)
        h.writeDescriptor(1, address: 0, length: .max, flags: .next, next: 1)
        #expect(chain.segments.array == [ChainSegment(address: RingHarness.page(0), length: 4, isWritable: false),
                                         ChainSegment(address: RingHarness.page(1), length: 4, isWritable: true)])
        var reader = h.device.reader(for: chain)
        #expect(try reader.readBytes(4) == [1, 2, 3, 4])
        var writer = h.device.writer(for: chain)
        try writer.write(contentsOf: [9, 9, 9, 9])
        #expect(writer.bytesWritten == 4)
        #expect(h.region.read(at: RingHarness.page(1), count: 4) == [9, 9, 9, 9])
    }

    @Test("GHT-MEM-04, SPL-DRV-01: ring areas must be aligned and inside guest memory")
    func ringSetup() {
        let region = GuestMemoryRegion(size: 1 << 16)
        let memory = region.identityTranslator
        func setup(_ d: UInt64, _ a: UInt64, _ u: UInt64, size: Int = 8) -> RingSetupError? {
            do {
                _ = try SplitDeviceQueue(queueSize: size, addresses: SplitRingAddresses(descriptorTable: d, availRing: a, usedRing: u),
                                         memory: memory, features: [.version1])
                return nil
            } catch {
                return error
            }
        }
        #expect(setup(0x1000, 0x2000, 0x3000) == nil)
        #expect(setup(0x1008, 0x2000, 0x3000) == .misaligned(.descriptorTable, address: 0x1008))
        #expect(setup(0x1000, 0x2001, 0x3000) == .misaligned(.availRing, address: 0x2001))
        #expect(setup(0x1000, 0x2000, 0x3002) == .misaligned(.usedRing, address: 0x3002))
        #expect(setup(0x1000, 0x2000, 0x10000 - 8) == .translation(.usedRing, TranslationFault(.outOfRange, address: 0x10000 - 8, length: 70, access: .write)))
        #expect(setup(0x1000, 0x2000, 0x3000, size: 6) == .invalidQueueSize(6))
    }
}
