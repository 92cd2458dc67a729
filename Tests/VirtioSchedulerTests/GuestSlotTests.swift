import Testing
import VirtioCore
@testable import VirtioScheduler

@Suite("Scheduler guest slots are bounded and reused")
struct GuestSlotTests {
    @Test("GHT-LIM-70: after thousands of join/leave cycles the slot table holds the guests there are, decisions walk only them, and the bystanders keep being served")
    func slotsReused() throws {
        let scheduler = try opaqueScheduler(sliceMilliseconds: 1, cutOffMilliseconds: 100)
        defer { scheduler.stop() }
        let polite = try scheduler.register(rules: .init(), queueCount: 1)
        let other = try scheduler.register(rules: .init(), queueCount: 1)
        for cycle in 0..<20_000 {
            let guest = try scheduler.register(rules: .init(), queueCount: 1)
            if cycle % 100 == 0 {
                try scheduler.runBatch(guest, requests: 1, nanoseconds: 0)
                scheduler.release(guest)
            }
            scheduler.unregister(guest)
        }
        #expect(scheduler.guestSlotCount == 3, "two guests stayed, one came and went")
        #expect(scheduler.guests == [polite, other])
        let (live, departed) = scheduler.state.withLock { ($0.guests.live.count, $0.departed.count) }
        #expect(live == 2)
        #expect(departed <= 1, "departed guests' statistics are kept only until their number is taken again")
        try scheduler.runBatch(polite, requests: 1, nanoseconds: 0)
        scheduler.release(polite)
        #expect(scheduler.statistics(of: polite)?.requests == 1)
    }

    @Test("GHT-LIM-70: a guest beyond the limit is refused with a typed error; once one leaves, the next is accepted into its slot")
    func guestLimit() throws {
        var configuration = SchedulerConfiguration(mapping: .shared(0))
        configuration.guestLimit = 3
        let scheduler = try DeviceScheduler<OpaqueDeviceModel>(functionCount: 1, configuration: configuration)
        defer { scheduler.stop() }
        let guests = try (0..<3).map { _ in try scheduler.register(rules: .init(), queueCount: 1) }
        #expect(throws: SchedulerError.tooManyGuests(3)) { try scheduler.register(rules: .init(), queueCount: 1) }
        scheduler.unregister(guests[1])
        #expect(scheduler.statistics(of: guests[1]) != nil, "a departed guest's report stays until its number is reused")
        let next = try scheduler.register(rules: .init(), queueCount: 1)
        #expect(next == guests[1])
        #expect(scheduler.statistics(of: next) == GuestStatistics())
        #expect(scheduler.guestSlotCount == 3)
    }
}
