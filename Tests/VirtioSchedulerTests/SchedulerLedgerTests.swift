import Testing
import VirtioScheduler
#if canImport(Glibc)
import Glibc
#endif

@Suite("The scheduler's VFs in the ledger")
struct SchedulerLedgerTests {
    @Test("GHT-LED-01, GHT-LED-04, GHT-LED-05: a VF is reserved for the back-end, shared with and used by its holder alone for a turn; claiming it or revoking it then is refused")
    func turnsInTheLedger() throws {
        let ledger = ResourceLedger()
        let scheduler = try DeviceScheduler<OpaqueDeviceModel>(functionCount: 2, configuration: SchedulerConfiguration(mapping: .shared(1)),
                                                               ledger: ledger)
        defer { scheduler.stop() }
        #expect(ledger.dump().map(\.resource) == [.virtualFunction(0), .virtualFunction(1)])
        #expect(ledger.dump().allSatisfy { $0.reserved && $0.owner == .backEnd && $0.sharedWith.isEmpty })

        let a = try scheduler.register(rules: .init(), queueCount: 1)
        let lease = try scheduler.obtain(a)
        let held = try #require(ledger.dump().first { $0.resource == .virtualFunction(1) })
        #expect(held.sharedWith == [a] && held.users == [a: 1])
        #expect(ledger.isAllowed(a, .virtualFunction(1)) && !ledger.isAllowed(a, .virtualFunction(0)))
        // Nobody — not even the holder — may take the VF over, and the back-end cannot pull it away mid-turn.
        #expect(throws: LedgerError.self) { try ledger.claim(.virtualFunction(1), for: a) }
        #expect(throws: LedgerError.self) { try ledger.revoke(.virtualFunction(1), from: .backEnd, mode: .refuseIfInUse) }

        try scheduler.finishBatch(lease, requests: 1, bytes: 0)
        scheduler.release(a)
        let after = try #require(ledger.dump().first { $0.resource == .virtualFunction(1) })
        #expect(after.sharedWith.isEmpty && after.users.isEmpty)
        #expect(!ledger.isAllowed(a, .virtualFunction(1)))
        #expect(scheduler.ledgerRefusals == 0)
    }
}

@Test("A scheduler its users let go of is freed without stop(), and its watchdog ends")
func schedulerIsFreed() throws {
    weak var weakScheduler: DeviceScheduler<OpaqueDeviceModel>?
    do {
        let scheduler = try DeviceScheduler<OpaqueDeviceModel>(functionCount: 1)
        weakScheduler = scheduler
        let guest = try scheduler.register(rules: .init(), queueCount: 1)
        let lease = try scheduler.obtain(guest)
        try scheduler.finishBatch(lease, requests: 1, bytes: 0)
    }
    // The watchdog holds it for at most one round (100 ms when nobody waits).
    for _ in 0..<50 where weakScheduler != nil { usleep(10_000) }
    #expect(weakScheduler == nil)
}
