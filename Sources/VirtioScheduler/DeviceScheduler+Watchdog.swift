import VirtioSystem

extension DeviceScheduler {
    /// The watchdog thread: while any guest waits it looks every tick for turns that ran out
    /// while the holder sat between batches (a switch) and for holders asked to yield longer
    /// ago than the cut-off bound (GHT-SCH-08). With nobody waiting it sleeps until rung (or
    /// 100 ms pass). One round per call; `false` once the scheduler stopped.
    func watchRound() -> Bool {
        let tickMilliseconds = Int32(clamping: max(1, min(configuration.sliceNanoseconds, configuration.cutOffNanoseconds) / 4_000_000))
        let waiting = state.withLock { s -> Bool? in s.stopping ? nil : s.anyoneWaiting || s.functions.contains { $0.yieldAsked != nil } }
        guard let waiting else { return false }
        _ = try? watchdogBell.wait(timeoutMilliseconds: waiting ? tickMilliseconds : 100)
        _ = try? watchdogBell.drain()
        let wake = state.withLock { s -> Wakeups in
            var wake = Wakeups()
            guard !s.stopping else { return wake }
            let now = SystemClock.monotonic.nanoseconds
            for f in s.functions.indices {
                guard let holder = s.functions[f].holder, let asked = s.functions[f].yieldAsked,
                      now &- asked >= configuration.cutOffNanoseconds, s.nextWaiter(for: f) != nil else { continue }
                cutOff(&s, holder, f, now: now, &wake)
            }
            let decided = dispatch(&s, now: now)
            wake.parkers += decided.parkers
            wake.cutOffs += decided.cutOffs
            return wake
        }
        wake.deliver()
        return true
    }
}
