import VirtioSystem
import Synchronization
import Testing
import VirtioSystem
import VirtioTransport
import VirtioCore
import VirtioDevices
@testable import VirtioScheduler

/// Stress, fairness and cut-off: many threads and wall-clock bounds.
extension SchedulerTests {
    @Test("GHT-SCH-02, GHT-SCH-04: no two guests are ever inside one function (invariant under stress), and no switch is refused")
    func oneGuestPerFunction() throws {
        let s = try opaqueScheduler(functions: 2, mapping: .pool, sliceMilliseconds: 0.2, cutOffMilliseconds: 10_000)
        defer { s.stop() }
        let guests = try (0..<6).map { _ in try s.register(rules: .init(), queueCount: 1) }
        let iterations = 5000
        // Per function, the guest inside; and the violations seen.
        let inside = Shared<(occupant: [DomainID?], violations: Int)>(([nil, nil], 0))
        let done = Shared<[Int]>(Array(repeating: 0, count: guests.count))
        let failures = Shared<[String]>([])
        let threads = guests.enumerated().map { k, g in
            TestThread {
                do {
                    for i in 0..<iterations {
                        let lease = try s.obtain(g)
                        inside.update { t in
                            if let o = t.occupant[lease.function], o != g { t.violations += 1 }
                            t.occupant[lease.function] = g
                        }
                        let loaded = try s.withFunction(lease) { model, registers in
                            var request = emptyRequest()
                            _ = model.start(&request)
                            return registers.guest
                        }
                        if loaded != g { inside.update { $0.violations += 1 } }
                        spin(nanoseconds: 2_000)
                        try s.finishRequest(lease)
                        inside.update { t in
                            if t.occupant[lease.function] == g { t.occupant[lease.function] = nil }
                        }
                        try s.finishBatch(lease, requests: 1, bytes: 0)
                        if i % 16 == 15 { s.release(g) }
                        done.update { $0[k] += 1 }
                    }
                    s.release(g)
                } catch {
                    failures.update { $0.append("\(g): \(error)") }
                }
            }
        }
        let start = SystemClock.monotonic.nanoseconds
        for t in threads { #expect(t.join(timeout: max(0.5, 8 - seconds(since: start)))) }
        #expect(inside.value.violations == 0)
        #expect(failures.value == [])
        #expect(done.value == Array(repeating: iterations, count: guests.count), "every guest made progress")
        for f in s.functions {
            #expect(f.counters.refusedSwitches == 0 && f.counters.scrubs == 0)
        }
        let turns = s.functions.reduce(0) { $0 + $1.status.turns }
        #expect(turns > 100, "the functions changed hands \(turns) times")
        for g in guests { #expect((s.statistics(of: g)?.turns ?? 0) >= 10) }
    }

    @Test("GHT-SCH-06: round robin: three greedy guests take turns in order (none twice while another waits), each turn at least the slice and ended soon after it")
    func roundRobin() throws {
        let slice: UInt64 = 10_000_000
        let s = try opaqueScheduler(functions: 1, policy: .roundRobin, sliceMilliseconds: Double(slice) / 1e6, cutOffMilliseconds: 10_000)
        defer { s.stop() }
        let guests = try (0..<3).map { _ in try s.register(rules: .init(), queueCount: 1) }
        let f = s.functions[0]
        let turns = Shared<[Turn]>([])
        let lastTurn = Shared<[(generation: UInt64, waited: UInt64)]>(Array(repeating: (0, 0), count: 3))
        let run = GreedyGuests(guests) { k, g in
            let lease = try s.obtain(g)
            yieldProcessor()
            if lastTurn.value[k].generation != lease.generation {
                // A new turn: nothing served in it yet, so every earlier turn is complete.
                let granted = f.status.sinceNanoseconds
                let stats = guests.map { s.statistics(of: $0)! }
                let waited = stats[k].waitNanoseconds
                let previous = lastTurn.update { t in defer { t[k] = (lease.generation, waited) }; return t[k].waited }
                turns.update {
                    $0.append(Turn(guest: k, waitedFrom: granted &- (waited &- previous), granted: granted,
                                   completed: stats.enumerated().map { $1.turns - ($0 == k ? 1 : 0) }))
                }
            }
            try s.serveBatch(lease, requests: 4, nanoseconds: 20_000)
        }
        sleep(milliseconds: 2000)
        let log = turns.value
        #expect(run.stop(releasingOn: s, guests))
        #expect(run.errors == [])

        // Whole rounds: every guest the same number of complete turns, and many of them.
        let rounds = log.filter { Set($0.completed).count == 1 && $0.completed[0] >= 2 }
        let first = try #require(rounds.first), last = try #require(rounds.last)
        #expect(last.completed[0] - first.completed[0] >= 40, "\(last.completed[0] - first.completed[0]) rounds")
        // Round robin shares the function's time, not the requests a guest gets through in it
        // (a holder the machine preempts serves fewer), so each turn is measured: never shorter
        // than the slice while others wait, and over soon after it (the median, as preemption
        // by other processes can stretch any single turn).
        let byGrant = log.sorted { $0.granted < $1.granted }
        let durations = zip(byGrant, byGrant.dropFirst()).map { $1.granted &- $0.granted }
        #expect(durations.count >= 120 && durations.allSatisfy { $0 >= slice },
                "shortest of \(durations.count) turns: \(durations.min() ?? 0) ns")
        let median = durations.sorted()[durations.count / 2]
        #expect(median < 2 * slice, "median turn \(median) ns")
        // While a guest waited, no other guest got two turns.
        var overtaken: [(waiting: Int, twice: Int)] = []
        for y in log where y.waitedFrom < y.granted {
            var grants = [0, 0, 0]
            for x in log where x.guest != y.guest && x.granted > y.waitedFrom && x.granted < y.granted { grants[x.guest] += 1 }
            if let twice = grants.firstIndex(where: { $0 >= 2 }) { overtaken.append((y.guest, twice)) }
        }
        #expect(overtaken.isEmpty, "guest \(overtaken.first.map { "\($0.twice) had two turns while \($0.waiting) waited" } ?? "")")
    }

    @Test("GHT-SCH-07: deficit round robin by requests with weights 1:2:4 serves requests in those shares within 5% (quantum below a batch)")
    func deficitByRequests() throws {
        let s = try opaqueScheduler(functions: 1, policy: .deficitRoundRobin(unit: .requests, quantum: 6),
                                    sliceMilliseconds: 50, cutOffMilliseconds: 10_000)
        defer { s.stop() }
        let guests = try [1, 2, 4].map { try s.register(rules: .init(), queueCount: 1, weight: $0) }
        let run = GreedyGuests(guests) { _, g in try s.runBatch(g, requests: 8, nanoseconds: 20_000) }
        sleep(milliseconds: 2000)
        let served = guests.map { s.statistics(of: $0)?.requests ?? 0 }
        #expect(run.stop(releasingOn: s, guests))
        #expect(run.errors == [])
        let shares = served.shares
        #expect(within(shares, of: [1.0 / 7, 2.0 / 7, 4.0 / 7], tolerance: 0.05), "shares \(shares) of \(served)")
    }

    @Test("GHT-SCH-07: deficit round robin by bytes with equal weights serves equal bytes within 5% to a guest with 4x bigger batches (quantum between the two)")
    func deficitByBytes() throws {
        let s = try opaqueScheduler(functions: 1, policy: .deficitRoundRobin(unit: .bytes, quantum: 2048),
                                    sliceMilliseconds: 50, cutOffMilliseconds: 10_000)
        defer { s.stop() }
        let guests = try (0..<2).map { _ in try s.register(rules: .init(), queueCount: 1) }
        let batchBytes = [8 * 512, 8 * 128]
        let run = GreedyGuests(guests) { k, g in try s.runBatch(g, requests: 8, nanoseconds: 20_000, bytes: batchBytes[k]) }
        sleep(milliseconds: 1500)
        let bytes = guests.map { s.statistics(of: $0)?.bytes ?? 0 }
        #expect(run.stop(releasingOn: s, guests))
        #expect(run.errors == [])
        #expect(within(bytes.shares, of: [0.5, 0.5], tolerance: 0.05), "bytes \(bytes)")
    }

    @Test("GHT-SCH-07: a guest alone never waits and runs up no debt: when a second guest arrives it gets its next turn within a few slices and its share")
    func noStaleAccounting() throws {
        let slice = 5.0
        let s = try opaqueScheduler(functions: 1, policy: .deficitRoundRobin(unit: .requests, quantum: 64),
                                    sliceMilliseconds: slice, cutOffMilliseconds: 10_000)
        defer { s.stop() }
        let a = try s.register(rules: .init(), queueCount: 1)
        let b = try s.register(rules: .init(), queueCount: 1)
        let arrival = Shared(UInt64.max)
        let longestWaitAfterArrival = Shared<Double>(0)
        let runA = GreedyGuests([a]) { _, g in
            let t = SystemClock.monotonic.nanoseconds
            let lease = try s.obtain(g)
            yieldProcessor()
            if t > arrival.value {
                let waited = seconds(since: t)
                longestWaitAfterArrival.update { $0 = max($0, waited) }
            }
            try s.serveBatch(lease, requests: 8, nanoseconds: 20_000)
        }
        sleep(milliseconds: 200)
        let alone = try #require(s.statistics(of: a))
        #expect(alone.turns == 1 && alone.preemptions == 0, "a alone kept its one turn")
        #expect(alone.waitNanoseconds < 20_000_000)

        let before = [a, b].map { s.statistics(of: $0)?.requests ?? 0 }
        arrival.store(SystemClock.monotonic.nanoseconds)
        let runB = GreedyGuests([b]) { _, g in try s.runBatch(g, requests: 8, nanoseconds: 20_000) }
        sleep(milliseconds: 300)
        let after = [a, b].map { s.statistics(of: $0)?.requests ?? 0 }
        #expect(runA.stop(releasingOn: s, [a, b]) && runB.stop(releasingOn: s, [a, b]))
        #expect(runA.errors == [] && runB.errors == [])

        let turnsOfA = try #require(s.statistics(of: a)).turns
        #expect(turnsOfA > 10, "a got turns after b arrived")
        #expect(longestWaitAfterArrival.value < 3 * slice / 1000 + 0.05, "a waited \(longestWaitAfterArrival.value) s for a turn")
        let shares = zip(after, before).map { $0 - $1 }.shares
        #expect(within(shares, of: [0.5, 0.5], tolerance: 0.2), "shares after b arrived \(shares)")
    }

    @Test("GHT-SCH-08, GHT-SCH-03: a holder stuck mid-request is cut off within the bound, the function scrubbed before the next guest, since never going back")
    func cutOff() throws {
        let bound = 0.2
        let s = try DeviceScheduler<BlockDeviceModel>(functionCount: 1, configuration: configuration(sliceMilliseconds: 5, cutOffMilliseconds: bound * 1000))
        defer { s.stop() }
        let rulesA = BlockDeviceModel.Rules(sectors: 0x1000..<0x2000)
        let rulesB = BlockDeviceModel.Rules(sectors: 0x4000..<0x5000)
        let cutOffs = Shared<[DomainID]>([])
        let a = try s.register(rules: rulesA, queueCount: 1) { g in cutOffs.update { $0.append(g) } }
        let b = try s.register(rules: rulesB, queueCount: 1) { g in cutOffs.update { $0.append(g) } }
        let f = s.functions[0]

        let la = try s.obtain(a)
        let started = try s.withFunction(la) { model, _ in verdict(&model, blockRequest(.read, sector: 0x1234), writable: 513) }
        #expect(started == .allowed)
        #expect(f.inspection.residue.contains(0x34) && f.inspection.residue.contains(0x12), "the model staged a's header")
        sleep(milliseconds: 10)                    // a's slice is over; it never finishes its request

        // Watch the status word all along: since never goes back.
        let watching = Shared(true)
        let backwards = Shared<[VirtualFunctionStatus]>([])
        let watcher = TestThread {
            var last = f.status
            while watching.value {
                let now = f.status
                if now.sinceNanoseconds < last.sinceNanoseconds { backwards.update { $0 += [last, now] } }
                last = now
            }
        }
        let seen = Shared<(residue: [UInt8], registers: GuestContext<BlockDeviceModel.Rules>?)?>(nil)
        let pending = PendingObtain(s, b) { _ in seen.update { $0 = (f.inspection.residue, f.inspection.registers) } }
        let lb = try #require(try pending.wait(seconds: 3)?.get())
        watching.store(false)
        #expect(watcher.join(timeout: 1))
        #expect(backwards.value == [])

        let waited = try #require(pending.elapsed)
        #expect(waited >= bound && waited < bound + 0.3, "b waited \(waited) s")
        #expect(seen.value?.residue.allSatisfy { $0 == 0 } == true, "residue \(seen.value?.residue ?? [])")
        #expect(seen.value?.registers?.guest == b && seen.value?.registers?.rules == rulesB)
        #expect(try s.withFunction(lb) { model, _ in model.rules } == rulesB)
        #expect(f.counters.scrubs == 1 && f.counters.refusedSwitches == 0)
        for _ in 0..<100 where cutOffs.value.isEmpty { sleep(milliseconds: 10) }
        #expect(cutOffs.value == [a])
        #expect(s.statistics(of: a)?.cutOff == true)

        #expect(throws: SchedulerError.cutOff(a)) { try s.finishBatch(la, requests: 1, bytes: 512) }
        #expect(throws: SchedulerError.cutOff(a)) { try s.withFunction(la) { model, _ in model.finish(queue: 0) } }
        #expect(throws: SchedulerError.cutOff(a)) { try s.obtain(a) }

        // b goes on normally.
        try s.withFunction(lb) { model, _ in
            #expect(verdict(&model, blockRequest(.read, sector: 0x4000), writable: 513) == .allowed)
            model.finish(queue: 0)
        }
        try s.finishBatch(lb, requests: 1, bytes: 512)
        for _ in 0..<50 {
            let lease = try s.obtain(b)
            try s.finishBatch(lease, requests: 1, bytes: 0)
        }
        #expect(s.statistics(of: b)?.requests == 51 && s.statistics(of: b)?.cutOff == false)
        #expect(cutOffs.value == [a] && f.counters.scrubs == 1)
    }
}

/// One turn of the round-robin test, logged by its guest as it began.
struct Turn: Sendable {
    let guest: Int
    /// When the guest began waiting for this turn, and when it got it (the scheduler's clock).
    let waitedFrom: UInt64
    let granted: UInt64
    /// Every guest's turns completed so far.
    let completed: [UInt64]
}
