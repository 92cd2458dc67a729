import Testing
import VirtioConformance
@testable import VirtioCore

/// Queue state as a value (Spec/transport.md §10): saved from a device queue, restored into it
/// or into a new queue over the same memory, encoded for vhost-user.
@Suite("Queue state", .tags(.ring))
struct QueueStateTests {
    static let one = [BufferSegment(address: RingHarness.page(0), length: 16)]

    static func roundTrip(_ h: inout RingHarness, token: UInt64) throws {
        try h.driver.add(readable: one, writable: [], token: token)
        h.driver.publish()
        let chain = try #require(try h.device.popAvailable())
        h.device.addUsed(chain, length: 0)
        h.device.publishUsed()
        #expect(try h.driver.reapUsed() == UsedBuffer(token: token, writtenLength: 0))
    }

    static func roundTrip(_ h: inout PackedRingHarness, token: UInt64) throws {
        try h.driver.add(readable: one, writable: [], token: token)
        let chain = try #require(try h.device.popAvailable())
        h.device.addUsed(chain, length: 0)
        h.device.publishUsed()
        #expect(try h.driver.reapUsed() == UsedBuffer(token: token, writtenLength: 0))
    }

    @Test("GHT-QST-01: a split queue's state holds its positions, size, areas and event-index flag")
    func splitState() throws {
        var h = RingHarness(queueSize: 8, features: [.version1, .eventIndex])
        for i in 0..<11 { try Self.roundTrip(&h, token: UInt64(i)) }
        try h.driver.add(readable: Self.one, writable: [], token: 99)
        h.driver.publish()
        _ = try #require(try h.device.popAvailable())
        let s = h.device.state
        #expect(s.format == .split && s.size == 8 && s.eventIndex)
        #expect(s.nextAvail == 12 && s.nextUsed == 11, "the chain in flight is popped, not used")
        #expect(s.descriptorArea == h.addresses.descriptorTable && s.driverArea == h.addresses.availRing
                && s.deviceArea == h.addresses.usedRing)
        #expect(s.vhostUserBase == 12 && h.device.vringBase == 12)
    }

    @Test("GHT-QST-02: a split queue restored mid-stream continues where the state was taken; another ring's state is refused")
    func splitRestore() throws {
        var h = RingHarness(queueSize: 4)
        for i in 0..<6 { try Self.roundTrip(&h, token: UInt64(i)) }
        let saved = h.device.state
        // The device moves on (two chains popped, one completed), then is put back.
        try h.driver.add(readable: Self.one, writable: [], token: 6)
        try h.driver.add(readable: Self.one, writable: [], token: 7)
        h.driver.publish()
        let first = try #require(try h.device.popAvailable())
        _ = try #require(try h.device.popAvailable())
        h.device.addUsed(first, length: 0)
        try h.device.restore(saved)
        #expect(h.device.state == saved && h.device.inFlightCount == 0 && !h.device.isBroken)
        // The restored queue pops the driver's next chains again, in order, and completes them
        // where the driver expects (it has not reaped anything since the save).
        let again = try #require(try h.device.popAvailable())
        let second = try #require(try h.device.popAvailable())
        h.device.addUsed(again, length: 0)
        h.device.addUsed(second, length: 0)
        h.device.publishUsed()
        #expect(try h.driver.reapUsed() == UsedBuffer(token: 6, writtenLength: 0))
        #expect(try h.driver.reapUsed() == UsedBuffer(token: 7, writtenLength: 0))
        for i in 8..<13 { try Self.roundTrip(&h, token: UInt64(i)) }

        var other = saved
        other.size = 8
        #expect(throws: QueueStateError.differentRing) { try h.device.restore(other) }
        other = saved
        other.format = .packed
        #expect(throws: QueueStateError.differentRing) { try h.device.restore(other) }
        other = saved
        other.driverArea &+= 64
        #expect(throws: QueueStateError.differentRing) { try h.device.restore(other) }
        #expect(h.device.nextAvailIndex == 13, "a refused state changes nothing")
    }

    @Test("GHT-QST-02: a packed queue restored across a wrap continues with the right wrap counters; a slot beyond the size is refused")
    func packedRestoreAcrossWrap() throws {
        var h = PackedRingHarness(queueSize: 3)
        for i in 0..<4 { try Self.roundTrip(&h, token: UInt64(i)) }
        let saved = h.device.state
        #expect(saved.availPosition == PackedRingPosition(slot: 1, wrapCounter: false))
        #expect(saved.usedPosition == PackedRingPosition(slot: 1, wrapCounter: false))
        #expect(saved.vhostUserBase == 0x0001_0001)
        try h.driver.add(readable: Self.one, writable: [], token: 4)
        _ = try #require(try h.device.popAvailable())
        try h.device.restore(saved)
        #expect(h.device.state == saved && h.device.inFlightCount == 0)
        let chain = try #require(try h.device.popAvailable())
        h.device.addUsed(chain, length: 0)
        h.device.publishUsed()
        #expect(try h.driver.reapUsed() == UsedBuffer(token: 4, writtenLength: 0))
        for i in 5..<12 { try Self.roundTrip(&h, token: UInt64(i)) }

        var beyond = saved
        beyond.nextUsed = 3
        #expect(throws: QueueStateError.positionBeyondSize(3, size: 3)) { try h.device.restore(beyond) }
        #expect(h.device.nextAvailPosition == PackedRingPosition(slot: 0, wrapCounter: true), "nothing changed")
    }

    @Test("GHT-QST-03: a new split queue made from a saved state continues the old one's traffic")
    func splitNewQueueFromState() throws {
        var h = RingHarness(queueSize: 8, features: [.version1, .eventIndex])
        for i in 0..<13 { try Self.roundTrip(&h, token: UInt64(i)) }
        let saved = h.device.state
        h.device = try SplitDeviceQueue(state: saved, memory: h.translator, features: [.version1, .eventIndex], statusCell: h.status)
        #expect(h.device.state == saved)
        for i in 13..<30 { try Self.roundTrip(&h, token: UInt64(i)) }
        #expect(h.device.nextAvailIndex == 30 && h.device.nextUsedIndex == 30)
        #expect(throws: QueueStateError.differentRing) {
            _ = try SplitDeviceQueue(state: saved, memory: h.translator, features: [.version1])
        }
    }

    @Test("GHT-QST-03: a new packed queue made from a state saved after a wrap continues the old one's traffic")
    func packedNewQueueFromState() throws {
        var h = PackedRingHarness(queueSize: 5)
        for i in 0..<7 { try Self.roundTrip(&h, token: UInt64(i)) }
        let saved = h.device.state
        #expect(!saved.availWrapCounter && !saved.usedWrapCounter)
        h.device = try PackedDeviceQueue(state: saved, memory: LoggingTranslator(h.region.identityTranslator, log: h.accessLog), features: [.version1, .ringPacked], statusCell: h.status)
        #expect(h.device.state == saved)
        for i in 7..<23 { try Self.roundTrip(&h, token: UInt64(i)) }
        #expect(h.device.nextAvailPosition == PackedRingPosition(slot: 3, wrapCounter: true))
    }

    @Test("GHT-QST-04: the vhost-user base is the state's encoding; decoding it gives the state back, a bad base a typed error")
    func vhostUserBase() throws {
        var packed = QueueState(format: .packed, size: 256, descriptorArea: 0x1000, driverArea: 0x2000, deviceArea: 0x3000)
        #expect(packed.vhostUserBase == 0x8000_8000, "a fresh packed ring (GHT-PKD-08)")
        packed.availPosition = PackedRingPosition(slot: 17, wrapCounter: false)
        packed.usedPosition = PackedRingPosition(slot: 255, wrapCounter: true)
        #expect(packed.vhostUserBase == 0x80FF_0011)
        #expect(try QueueState(vhostUserBase: packed.vhostUserBase, format: .packed, size: 256, descriptorArea: 0x1000,
                               driverArea: 0x2000, deviceArea: 0x3000) == packed)
        #expect(throws: QueueStateError.positionBeyondSize(256, size: 256)) {
            _ = try QueueState(vhostUserBase: 0x8100_0000, format: .packed, size: 256)
        }
        let split = try QueueState(vhostUserBase: 0xFFFE, format: .split, size: 64, splitUsedIndex: 0xFFF0)
        #expect(split.nextAvail == 0xFFFE && split.nextUsed == 0xFFF0 && split.vhostUserBase == 0xFFFE)
        #expect(throws: QueueStateError.splitBaseBeyond16Bits(0x1_0000)) {
            _ = try QueueState(vhostUserBase: 0x1_0000, format: .split, size: 64)
        }
        #expect(throws: QueueStateError.invalidSize(48)) { _ = try QueueState(vhostUserBase: 0, format: .split, size: 48) }
    }
}
