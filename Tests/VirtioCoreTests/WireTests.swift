import Testing
import VirtioCore

@Suite("Wire definitions", .tags(.wire))
struct WireTests {
    @Test("RSV-DEF-01, FEAT-DEF-01: feature bit numbers and ranges")
    func featureBits() {
        #expect(VirtioFeatures.indirectDescriptors.rawValue == 1 << 28)
        #expect(VirtioFeatures.eventIndex.rawValue == 1 << 29)
        #expect(VirtioFeatures.version1.rawValue == 1 << 32)
        #expect(VirtioFeatures.accessPlatform.rawValue == 1 << 33)
        #expect(VirtioFeatures.ringPacked.rawValue == 1 << 34)
        #expect(VirtioFeatures.inOrder.rawValue == 1 << 35)
        #expect(VirtioFeatures.orderPlatform.rawValue == 1 << 36)
        #expect(VirtioFeatures.notificationData.rawValue == 1 << 38)
        #expect(VirtioFeatures.ringReset.rawValue == 1 << 40)
        #expect(VirtioFeatures.legacyOnly.bits == [24, 27, 30])
        #expect(VirtioFeatures.transportBits.bits == Array(24...40))
        #expect(VirtioFeatures.reservedBits.bits == Array(41...49))
        #expect(VirtioFeatures.deviceTypeBits.bits == Array(0...23) + Array(50...63))
        // The three ranges partition bits 0-63.
        let all = VirtioFeatures.transportBits.union(.reservedBits).union(.deviceTypeBits)
        #expect(all.rawValue == .max)
        #expect(VirtioFeatures.transportBits.intersection(.deviceTypeBits).isEmpty)
        #expect(VirtioFeatures.implementedTransport.isDisjoint(with: .legacyOnly))
        #expect(VirtioFeatures.implementedTransport.isDisjoint(with: .foreignTransportBits))
    }

    @Test("FEAT-DRV-02: a feature whose prerequisite is absent is dropped")
    func featurePrerequisites() {
        let x = VirtioFeatures(bit: 3), y = VirtioFeatures(bit: 4), z = VirtioFeatures(bit: 5)
        let rules: [(VirtioFeatures, VirtioFeatures)] = [(x, y), (z, x)]
        #expect(([x, z] as VirtioFeatures).closure(requirements: rules).isEmpty)
        #expect(([x, y, z] as VirtioFeatures).closure(requirements: rules) == [x, y, z])
        #expect(([x, z] as VirtioFeatures).missingPrerequisites(rules) == y)
    }

    @Test("STAT-DEF-01: status bit values")
    func statusBits() {
        #expect(DeviceStatus.acknowledge.rawValue == 0x01)
        #expect(DeviceStatus.driver.rawValue == 0x02)
        #expect(DeviceStatus.driverOK.rawValue == 0x04)
        #expect(DeviceStatus.featuresOK.rawValue == 0x08)
        #expect(DeviceStatus.deviceNeedsReset.rawValue == 0x40)
        #expect(DeviceStatus.failed.rawValue == 0x80)
        #expect(DeviceStatusCell().status == [])
    }

    @Test("STAT-DRV-01: the legal initialization sequence is accepted")
    func legalSequence() throws {
        var status: DeviceStatus = []
        for next: DeviceStatus in [[.acknowledge], [.acknowledge, .driver], [.acknowledge, .driver, .featuresOK],
                                   [.acknowledge, .driver, .featuresOK, .driverOK]] {
            try DeviceStatus.validateDriverWrite(from: status, to: next)
            status = next
        }
        try DeviceStatus.validateDriverWrite(from: status, to: [])   // reset is always legal
    }

    @Test("STAT-DRV-01: progress bits out of order are refused")
    func outOfOrder() {
        #expect(throws: StatusTransitionError.outOfOrder(.driver)) {
            try DeviceStatus.validateDriverWrite(from: [], to: [.driver])
        }
        #expect(throws: StatusTransitionError.outOfOrder(.driverOK)) {
            try DeviceStatus.validateDriverWrite(from: [.acknowledge, .driver], to: [.acknowledge, .driver, .driverOK])
        }
    }

    @Test("STAT-DRV-02: the driver never clears a status bit except by reset")
    func neverClears() {
        #expect(throws: StatusTransitionError.clearsBits(.featuresOK)) {
            try DeviceStatus.validateDriverWrite(from: [.acknowledge, .driver, .featuresOK], to: [.acknowledge, .driver])
        }
    }

    @Test("STAT-DRV-03: after FAILED only a reset is accepted; DEVICE_NEEDS_RESET is the device's bit")
    func afterFailed() throws {
        #expect(throws: StatusTransitionError.writeAfterFailed) {
            try DeviceStatus.validateDriverWrite(from: [.acknowledge, .failed], to: [.acknowledge, .driver, .failed])
        }
        try DeviceStatus.validateDriverWrite(from: [.acknowledge, .driver], to: [.acknowledge, .driver, .failed])
        try DeviceStatus.validateDriverWrite(from: [.acknowledge, .failed], to: [])
        #expect(throws: StatusTransitionError.deviceOwnedBit) {
            try DeviceStatus.validateDriverWrite(from: [.acknowledge], to: [.acknowledge, .deviceNeedsReset])
        }
        #expect(throws: StatusTransitionError.undefinedBits(DeviceStatus(rawValue: 0x20))) {
            try DeviceStatus.validateDriverWrite(from: [], to: DeviceStatus(rawValue: 0x21))
        }
    }

    @Test("GHT-BRK-05, STAT-DEV-03: DEVICE_NEEDS_RESET owes a config notification once, only after DRIVER_OK")
    func needsResetNotification() {
        let live = DeviceStatusCell([.acknowledge, .driver, .featuresOK, .driverOK])
        #expect(live.setNeedsReset())
        #expect(!live.setNeedsReset())
        #expect(live.status.contains(.deviceNeedsReset))
        let early = DeviceStatusCell([.acknowledge, .driver])
        #expect(!early.setNeedsReset())
        #expect(early.status.contains(.deviceNeedsReset))
    }

    @Test("SPL-DEF-01, GHT-MEM-05: split queue sizes are powers of 2 up to 32768")
    func queueSizes() {
        for size in [1, 2, 4, 256, 1024, 32768] { #expect(SplitRingLayout(queueSize: size) != nil) }
        for size in [0, -1, 3, 6, 100, 32767, 65536, 65535] { #expect(SplitRingLayout(queueSize: size) == nil) }
    }

    @Test("SPL-DEF-02: part sizes for N = 256 are 4096, 518 and 2054 bytes")
    func partSizes() {
        let layout = SplitRingLayout(queueSize: 256)!
        #expect(layout.descriptorTableSize == 4096)
        #expect(layout.availRingSize == 518)
        #expect(layout.usedRingSize == 2054)
        let o = layout.contiguousOffsets
        #expect(o.descriptorTable == 0 && o.availRing == 4096)
        #expect(o.usedRing % 4 == 0 && o.usedRing >= 4096 + 518)
        #expect(o.totalSize == o.usedRing + 2054)
    }

    @Test("SPL-DEF-03: descriptor byte layout is le64 addr, le32 len, le16 flags, le16 next")
    func descriptorLayout() {
        let region = GuestMemoryRegion(size: 4096)
        let table = UnsafeDescriptorTable(region.range.slice(offset: 0, length: 32))
        table.store(Descriptor(address: 0x0102_0304_0506_0708, length: 0x1122_3344, flags: [.next, .write], next: 0xAABB), at: 1)
        #expect(region.read(at: 16, count: 16) == [0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,
                                                    0x44, 0x33, 0x22, 0x11, 0x03, 0x00, 0xBB, 0xAA])
        #expect(table.load(1) == Descriptor(address: 0x0102_0304_0506_0708, length: 0x1122_3344, flags: [.next, .write], next: 0xAABB))
        #expect(DescriptorFlags.next.rawValue == 1 && DescriptorFlags.write.rawValue == 2 && DescriptorFlags.indirect.rawValue == 4)
    }

    @Test("AVL-DEF-01, USD-DEF-01: available and used ring field offsets")
    func ringFieldOffsets() {
        let region = GuestMemoryRegion(size: 4096)
        let avail = UnsafeAvailRing(region.range.slice(offset: 0, length: 6 + 2 * 4), count: 4)
        avail.flags = 0x0101
        avail.storeIndex(0x0202)
        avail.setEntry(3, 0x0303)
        avail.usedEvent = 0x0404
        #expect(region.read(at: 0, count: 14) == [1, 1, 2, 2, 0, 0, 0, 0, 0, 0, 3, 3, 4, 4])
        let used = UnsafeUsedRing(region.range.slice(offset: 64, length: 6 + 8 * 2), count: 2)
        used.flags = 0x0101
        used.storeIndex(0x0202)
        used.setElement(1, UsedElement(id: 0x0303_0303, length: 0x0505_0505))
        used.availEvent = 0x0606
        #expect(region.read(at: 64, count: 22) == [1, 1, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0,
                                                   3, 3, 3, 3, 5, 5, 5, 5, 6, 6])
    }

    @Test("UNS-DEV-02, ANS-DRV-03: the event-index decision matches [old, new) over the whole 16-bit range")
    func eventIndexFormula() {
        // Reference: the event index lies in [old, new) modulo 2^16.
        func inWindow(_ event: UInt16, _ new: UInt16, _ old: UInt16) -> Bool {
            (event &- old) < (new &- old)
        }
        var random = TestRandom(seed: 29)
        for value in 0...UInt16.max {
            for delta: UInt16 in [0, 1, 2, 255, 32768, 65535] {
                let new = value, old = value &- delta
                for event in [old, old &- 1, old &+ 1, new, new &- 1, new &+ 1, UInt16.random(in: 0...UInt16.max, using: &random)] {
                    if EventIndex.needsNotification(event: event, new: new, old: old) != inWindow(event, new, old) {
                        Issue.record("event \(event) new \(new) old \(old)")
                        return
                    }
                }
            }
        }
        // The spec's examples.
        #expect(EventIndex.needsNotification(event: 0xFFFF, new: 0x0001, old: 0xFFFE))
        #expect(EventIndex.needsNotification(event: 0, new: 1, old: 0))
        #expect(!EventIndex.needsNotification(event: 1, new: 1, old: 0))
    }
}
