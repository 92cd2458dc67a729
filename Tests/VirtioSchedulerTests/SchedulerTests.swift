import VirtioSystem
import Testing
import VirtioSystem
import VirtioTransport
import VirtioCore
import VirtioDevices
@testable import VirtioScheduler

/// The scheduler's guarantees, on real threads. Serialized: the timing and fairness tests
/// (SchedulerTimingTests.swift) need the machine's cores to themselves.
@Suite("Device scheduler", .serialized)
struct SchedulerTests {
    @Test("GHT-SCH-01: one-to-one gives each guest a function of its own and refuses a guest beyond the functions")
    func oneToOne() throws {
        let s = try opaqueScheduler(functions: 2, mapping: .oneToOne, sliceMilliseconds: 1, cutOffMilliseconds: 5000)
        defer { s.stop() }
        let a = try s.register(rules: .init(), queueCount: 1)
        let b = try s.register(rules: .init(), queueCount: 1)
        #expect(s.functions(of: a) == [0])
        #expect(s.functions(of: b) == [1])
        #expect(throws: SchedulerError.noFunction) { try s.register(rules: .init(), queueCount: 1) }

        let la = try s.obtain(a)
        _ = try s.startRequest(la)
        // b has its own function: it does not wait for a's.
        let lb = try #require(try PendingObtain(s, b).wait(seconds: 2)?.get())
        #expect(la.function == 0)
        #expect(lb.function == 1)
        #expect(s.functions[0].status.owner == a)
        #expect(s.functions[1].status.owner == b)

        // A guest that left frees its function for a newcomer.
        try s.finishRequest(la)
        try s.finishBatch(la, requests: 1, bytes: 0)
        s.unregister(a)
        let c = try s.register(rules: .init(), queueCount: 1)
        #expect(s.functions(of: c) == [0])
    }

    @Test("GHT-SCH-01: a shared mapping puts every guest on function k only, even with the other functions idle")
    func shared() throws {
        let s = try opaqueScheduler(functions: 3, mapping: .shared(1), sliceMilliseconds: 1, cutOffMilliseconds: 5000)
        defer { s.stop() }
        let guests = try (0..<3).map { _ in try s.register(rules: .init(), queueCount: 1) }
        for g in guests { #expect(s.functions(of: g) == [1]) }

        let la = try s.obtain(guests[0])
        #expect(la.function == 1)
        _ = try s.startRequest(la)
        sleep(milliseconds: 3)
        let pending = PendingObtain(s, guests[1])
        sleep(milliseconds: 100)
        #expect(!pending.isDone, "the second guest waits for function 1 although 0 and 2 are idle")
        #expect(s.functions[0].status.state == .idle && s.functions[2].status.state == .idle)
        try s.finishRequest(la)
        try s.finishBatch(la, requests: 1, bytes: 0)
        let lb = try #require(try pending.wait(seconds: 2)?.get())
        #expect(lb.function == 1)
        #expect(s.functions[0].counters.switches == 0 && s.functions[2].counters.switches == 0)

        let bad = try opaqueScheduler(functions: 2, mapping: .shared(3), sliceMilliseconds: 1, cutOffMilliseconds: 5000)
        defer { bad.stop() }
        #expect(throws: SchedulerError.functionOutOfRange(3)) { try bad.register(rules: .init(), queueCount: 1) }
    }

    @Test("GHT-SCH-01: a pool is work-conserving: two busy guests on two functions both hold one at once, and nobody is cut off")
    func pool() throws {
        let s = try opaqueScheduler(functions: 2, mapping: .pool, sliceMilliseconds: 1, cutOffMilliseconds: 100)
        defer { s.stop() }
        let a = try s.register(rules: .init(), queueCount: 1)
        let b = try s.register(rules: .init(), queueCount: 1)
        #expect(s.functions(of: a) == [0, 1] && s.functions(of: b) == [0, 1])

        // a is past its slice with a request in flight when b arrives: b takes the idle function.
        let la = try s.obtain(a)
        _ = try s.startRequest(la)
        sleep(milliseconds: 5)
        let pending = PendingObtain(s, b)
        let lb = try #require(try pending.wait(seconds: 1)?.get())
        #expect(lb.function != la.function)
        #expect(Set(s.functions.map(\.status.state)) == [.busy])
        #expect(Set(s.functions.compactMap(\.status.owner)) == [a, b])

        // Both keep their functions well past the cut-off bound: nobody waits, so nobody is
        // asked to give one up.
        sleep(milliseconds: 300)
        try s.finishRequest(la)
        try s.finishBatch(la, requests: 1, bytes: 0)
        try s.finishBatch(lb, requests: 0, bytes: 0)
        let guests = GreedyGuests([a, b]) { _, g in try s.runBatch(g, requests: 2, nanoseconds: 20_000) }
        // Until both ran many batches (slower when other processes load the machine).
        let start = SystemClock.monotonic.nanoseconds
        while seconds(since: start) < 5, [a, b].contains(where: { (s.statistics(of: $0)?.batches ?? 0) <= 100 }) {
            sleep(milliseconds: 10)
        }
        #expect(Set(s.functions.compactMap(\.status.owner)) == [a, b])
        #expect(guests.stop(releasingOn: s, [a, b]))
        #expect(guests.errors == [])
        for g in [a, b] {
            let stats = try #require(s.statistics(of: g))
            #expect(!stats.cutOff)
            #expect(stats.turns == 1, "\(g) never lost its function")
            #expect(stats.batches > 100)
        }
        #expect(s.functions.map(\.counters.scrubs) == [0, 0])
    }

    @Test("GHT-SCH-02: a waiting guest blocks only itself: a guest on its own function keeps going meanwhile")
    func waitingBlocksOnlyItself() throws {
        let s = try opaqueScheduler(functions: 3, mapping: .oneToOne, sliceMilliseconds: 1, cutOffMilliseconds: 5000)
        defer { s.stop() }
        let holder = try s.register(rules: .init(), queueCount: 1)
        let waiter = try s.register(rules: .init(), queueCount: 1)
        let other = try s.register(rules: .init(), queueCount: 1)
        try s.assign(waiter, to: [0])    // the waiter now shares the holder's function

        let lh = try s.obtain(holder)
        _ = try s.startRequest(lh)
        sleep(milliseconds: 3)
        let pending = PendingObtain(s, waiter)
        sleep(milliseconds: 10)

        let start = SystemClock.monotonic.nanoseconds
        var worst = 0.0
        for _ in 0..<200 {
            let t = SystemClock.monotonic.nanoseconds
            try s.runBatch(other, requests: 1, nanoseconds: 10_000)
            worst = max(worst, seconds(since: t))
        }
        #expect(seconds(since: start) < 1.5)
        #expect(worst < 0.1, "a batch of the other guest took \(worst) s")
        #expect(!pending.isDone, "the waiter still waits")
        #expect(s.functions[0].status.owner == holder)
        let stats = try #require(s.statistics(of: other))
        #expect(stats.batches == 200 && stats.turns == 1)

        try s.finishRequest(lh)
        try s.finishBatch(lh, requests: 1, bytes: 0)
        let lw = try #require(try pending.wait(seconds: 2)?.get())
        #expect(lw.function == 0)
    }

    @Test("GHT-SCH-03: the status is read without the function's or the scheduler's lock: busy, owner, since, idle after release")
    func status() throws {
        let s = try opaqueScheduler(functions: 1, sliceMilliseconds: 1, cutOffMilliseconds: 5000)
        defer { s.stop() }
        let a = try s.register(rules: .init(), queueCount: 1)
        let b = try s.register(rules: .init(), queueCount: 1)
        let f = s.functions[0]
        #expect(f.status.state == .idle && f.status.owner == nil && f.status.turns == 0)

        let before = SystemClock.monotonic.nanoseconds
        let la = try s.obtain(a)
        let after = SystemClock.monotonic.nanoseconds
        let busy = f.status
        #expect(busy.state == .busy && busy.owner == a && busy.turns == 1)
        #expect((before...after).contains(busy.sinceNanoseconds))

        // With both locks held by a thread, the status still reads (it would deadlock otherwise).
        let read = Shared<[VirtualFunctionStatus]>([])
        let reader = TestThread {
            let underScheduler = s.state.withLock { _ in f.status }
            let underFunction = f.core.withLock { _ in f.status }
            read.update { $0 = [underScheduler, underFunction] }
        }
        #expect(reader.join(timeout: 2), "reading the status blocked on a lock")
        #expect(read.value == [busy, busy])

        var sinces = [busy.sinceNanoseconds]
        try s.finishBatch(la, requests: 0, bytes: 0)
        s.release(a)
        let idle = f.status
        #expect(idle.state == .idle && idle.owner == nil && idle.turns == 1)
        sinces.append(idle.sinceNanoseconds)

        // The next turns: b after a release, then a again after b's slice (a preemption).
        let lb = try s.obtain(b)
        #expect(f.status.state == .busy && f.status.owner == b && f.status.turns == 2)
        sinces.append(f.status.sinceNanoseconds)
        let pending = PendingObtain(s, a)
        sleep(milliseconds: 5)
        try s.finishBatch(lb, requests: 0, bytes: 0)
        let la2 = try #require(try pending.wait(seconds: 2)?.get())
        #expect(f.status.state == .busy && f.status.owner == a && f.status.turns == 3)
        sinces.append(f.status.sinceNanoseconds)
        try s.finishBatch(la2, requests: 0, bytes: 0)
        s.release(a)
        #expect(f.status.state == .idle && f.status.owner == nil)
        sinces.append(f.status.sinceNanoseconds)
        #expect(sinces == sinces.sorted(), "since never goes back")
    }

    @Test("GHT-SCH-04: no switch with a request in flight: the waiter gets the function only once the holder finished")
    func noSwitchInFlight() throws {
        let s = try opaqueScheduler(functions: 1, sliceMilliseconds: 1, cutOffMilliseconds: 2000)
        defer { s.stop() }
        let a = try s.register(rules: .init(), queueCount: 1)
        let b = try s.register(rules: .init(), queueCount: 1)
        let f = s.functions[0]

        let la = try s.obtain(a)
        _ = try s.startRequest(la)
        sleep(milliseconds: 5)                     // past a's slice
        let inFlightAtObtain = Shared<Int>(-1)
        let pending = PendingObtain(s, b) { _ in inFlightAtObtain.update { $0 = f.inspection.inFlight } }
        var notA = 0
        for _ in 0..<20 {
            sleep(milliseconds: 5)
            if f.status.state != .busy || f.status.owner != a { notA += 1 }
        }
        #expect(notA == 0, "the function left a with its request in flight")
        #expect(!pending.isDone)

        try s.finishRequest(la)
        let finished = SystemClock.monotonic.nanoseconds
        try s.finishBatch(la, requests: 1, bytes: 0)
        let lb = try #require(try pending.wait(seconds: 2)?.get())
        let returned = try #require(pending.returnedAt)
        #expect(Double(returned &- finished) / 1e9 < 0.25, "b got the function promptly")
        #expect(lb.function == 0)
        #expect(inFlightAtObtain.value == 0)
        #expect(f.counters.refusedSwitches == 0 && f.counters.scrubs == 0)
        let stats = try #require(s.statistics(of: a))
        #expect(!stats.cutOff && stats.requests == 1 && stats.preemptions == 1)
    }
}
