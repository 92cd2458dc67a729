import Testing
import VirtioCore

@Suite("Notification suppression", .tags(.ring))
struct NotificationTests {
    /// Posts one readable chain, has the device complete it; returns the device's decision.
    func completeOne(_ h: inout RingHarness) throws -> Bool {
        try h.driver.add(readable: [BufferSegment(address: RingHarness.page(0), length: 1)], writable: [], token: 0)
        h.driver.publish()
        let chain = try #require(try h.device.popAvailable())
        h.device.addUsed(chain, length: 0)
        h.device.publishUsed()
        return h.device.needsNotification()
    }

    @Test("UNS-DEV-01: without EVENT_IDX the device notifies unless NO_INTERRUPT is set, and ignores used_event")
    func usedFlags() throws {
        var h = RingHarness(queueSize: 8)
        h.ring.availRing.usedEvent = 100   // must be ignored
        #expect(try completeOne(&h))
        h.driver.disableUsedNotifications()
        #expect(h.ring.availRing.flags == UnsafeAvailRing.noInterrupt)
        #expect(try !completeOne(&h))
        let decision1 = h.driver.enableUsedNotifications()
        _ = decision1   // nothing pending; the flag change is what matters here
        #expect(h.ring.availRing.flags == 0)
        #expect(try completeOne(&h))
        // Nothing new used since the last decision: nothing owed.
        let decision2 = h.device.needsNotification()
        #expect(!decision2)
    }

    @Test("UNS-DEV-02: with EVENT_IDX a used_event of 0 asks for the 1st and then the 65537th completion")
    func usedEventWraps() throws {
        var h = RingHarness(queueSize: 4, features: [.version1, .eventIndex])
        h.ring.availRing.flags = UnsafeAvailRing.noInterrupt   // bit 0 must be ignored with EVENT_IDX
        var notified: [Int] = []
        for completion in 1...65538 {
            let chain: DescriptorChain
            h.writeDescriptor(0, address: RingHarness.page(0), length: 1)
            h.makeAvailable([0], from: UInt16(truncatingIfNeeded: completion - 1))
            chain = try #require(try h.device.popAvailable())
            h.device.addUsed(chain, length: 0)
            h.device.publishUsed()
            h.ring.availRing.usedEvent = 0   // the driver keeps asking for position 0
            if h.device.needsNotification() { notified.append(completion) }
        }
        #expect(notified == [1, 65537])
    }

    @Test("UNS-DEV-02: a batch notifies iff used_event lies in the batch's window")
    func usedEventBatch() throws {
        var h = RingHarness(queueSize: 8, features: [.version1, .eventIndex])
        for i in 0..<8 { h.writeDescriptor(i, address: RingHarness.page(i), length: 1) }
        h.makeAvailable([0, 1, 2, 3])
        h.ring.availRing.usedEvent = 2   // notify when the entry at used position 2 is written
        for _ in 0..<2 { h.device.addUsed(try #require(try h.device.popAvailable()), length: 0) }
        h.device.publishUsed()
        let decision101 = h.device.needsNotification()   // positions 0, 1
        #expect(!decision101)
        for _ in 0..<2 { h.device.addUsed(try #require(try h.device.popAvailable()), length: 0) }
        h.device.publishUsed()
        let decision102 = h.device.needsNotification()    // positions 2, 3
        #expect(decision102)
    }

    @Test("ANS-DRV-02: without EVENT_IDX the driver kicks unless the device set NO_NOTIFY")
    func kickFlags() throws {
        var h = RingHarness(queueSize: 8)
        h.ring.usedRing.availEvent = 100   // ignored
        try h.driver.add(readable: [BufferSegment(address: 0, length: 1)], writable: [], token: 0)
        h.driver.publish()
        let decision3 = h.driver.kickNeeded()
        #expect(decision3)
        h.device.disableNotifications()
        #expect(h.ring.usedRing.flags == UnsafeUsedRing.noNotify)   // ANS-DEV-01
        try h.driver.add(readable: [BufferSegment(address: 0, length: 1)], writable: [], token: 1)
        h.driver.publish()
        let decision4 = h.driver.kickNeeded()
        #expect(!decision4)
        let decision103 = h.device.enableNotifications()   // two chains are waiting: process, do not sleep
        #expect(decision103)
        #expect(h.ring.usedRing.flags == 0)
        let decision5 = h.driver.kickNeeded()
        #expect(!decision5, "nothing new published since the last kick decision")
    }

    @Test("ANS-DRV-03, ANS-DEV-01: with EVENT_IDX the driver kicks when avail_event is passed; used.flags stays 0")
    func kickEventIndex() throws {
        var h = RingHarness(queueSize: 8, features: [.version1, .eventIndex])
        h.ring.usedRing.flags = UnsafeUsedRing.noNotify   // bit 0 ignored with EVENT_IDX
        let decision104 = h.device.enableNotifications()          // avail_event = 0: kick at the first chain
        #expect(!decision104)
        #expect(h.ring.usedRing.availEvent == 0)
        try h.driver.add(readable: [BufferSegment(address: 0, length: 1)], writable: [], token: 0)
        h.driver.publish()
        let decision6 = h.driver.kickNeeded()
        #expect(decision6)
        // The device does not re-arm: the next chain (position 1) is not kicked.
        try h.driver.add(readable: [BufferSegment(address: 0, length: 1)], writable: [], token: 1)
        h.driver.publish()
        let decision7 = h.driver.kickNeeded()
        #expect(!decision7)
        // Re-armed after popping both: avail_event = 2.
        _ = try h.device.popAvailable()
        _ = try h.device.popAvailable()
        h.device.disableNotifications()
        #expect(h.ring.usedRing.flags == UnsafeUsedRing.noNotify, "flags untouched with EVENT_IDX")
        let decision8 = h.device.enableNotifications()
        #expect(!decision8)
        #expect(h.ring.usedRing.availEvent == 2)
        try h.driver.add(readable: [BufferSegment(address: 0, length: 1)], writable: [], token: 2)
        try h.driver.add(readable: [BufferSegment(address: 0, length: 1)], writable: [], token: 3)
        h.driver.publish()
        let decision9 = h.driver.kickNeeded()
        #expect(decision9, "the batch 2..<4 passes avail_event 2")
    }

    @Test("UNS-DRV-01: with EVENT_IDX the driver never sets NO_INTERRUPT; it moves used_event instead")
    func driverSuppressionWithEventIndex() throws {
        var h = RingHarness(queueSize: 8, features: [.version1, .eventIndex])
        h.driver.disableUsedNotifications()
        #expect(h.ring.availRing.flags == 0)
        #expect(h.ring.availRing.usedEvent == 0xFFFF)
        let decision10 = h.driver.enableUsedNotifications()
        #expect(!decision10)
        #expect(h.ring.availRing.usedEvent == 0)
    }

    @Test("RCV-DRV-01: re-enabling used notifications re-checks for completions that raced in")
    func reenableRace() throws {
        var h = RingHarness(queueSize: 8)
        h.driver.disableUsedNotifications()
        try h.driver.add(readable: [BufferSegment(address: 0, length: 1)], writable: [], token: 5)
        h.driver.publish()
        let chain = try #require(try h.device.popAvailable())
        h.device.addUsed(chain, length: 0)
        h.device.publishUsed()
        let decision105 = h.device.needsNotification()   // suppressed
        #expect(!decision105)
        let decision11 = h.driver.enableUsedNotifications()
        #expect(decision11, "the completion that landed meanwhile is reported")
        #expect(try h.driver.reapUsed()?.token == 5)
        let decision12 = h.driver.enableUsedNotifications()
        #expect(!decision12)
    }

    @Test("ANS-DEV-02: spurious available-buffer notifications are harmless")
    func spuriousKicks() throws {
        var h = RingHarness(queueSize: 8)
        for _ in 0..<1000 { #expect(try h.device.popAvailable() == nil) }
        do { let broken = h.device.isBroken; #expect(!broken) }
        #expect(h.ring.usedRing.loadIndex() == 0)
    }

    @Test("SUP-DRV-02: several heads can be added before one index update")
    func batchedPublish() throws {
        var h = RingHarness(queueSize: 8)
        for t in 0..<5 { try h.driver.add(readable: [BufferSegment(address: 0, length: 1)], writable: [], token: UInt64(t)) }
        #expect(h.ring.availRing.loadIndex() == 0, "nothing is visible before publish")
        #expect(try h.device.popAvailable() == nil)
        h.driver.publish()
        #expect(h.ring.availRing.loadIndex() == 5)
        var n = 0
        while try h.device.popAvailable() != nil { n += 1 }
        #expect(n == 5)
    }

    @Test("USD-DEV-01: used elements are invisible until the used index is published")
    func usedPublish() throws {
        var h = RingHarness(queueSize: 8)
        try h.driver.add(readable: [BufferSegment(address: 0, length: 1)], writable: [], token: 1)
        h.driver.publish()
        h.device.addUsed(try #require(try h.device.popAvailable()), length: 0)
        #expect(try h.driver.reapUsed() == nil)
        h.device.publishUsed()
        #expect(try h.driver.reapUsed()?.token == 1)
    }
}
