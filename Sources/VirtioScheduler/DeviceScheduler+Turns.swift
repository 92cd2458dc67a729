import VirtioSystem

extension DeviceScheduler {
    /// Obtains a function for a batch of `guest`'s requests (GHT-SCH-02): at once if the guest
    /// holds one and its turn goes on, otherwise after waiting — only this caller waits.
    public func obtain(_ guest: DomainID) throws(SchedulerError) -> FunctionLease {
        var first = true
        while true {
            let (lease, wake, parker) = try state.withLock { s throws(SchedulerError) -> (FunctionLease?, Wakeups, Doorbell?) in
                guard !s.stopping else { throw .stopped }
                guard let g = s.guests[guest] else { throw .unknownGuest(guest) }
                guard !g.cutOff else {
                    if !first { s.guests[guest]!.waiting -= 1 }
                    throw .cutOff(guest)
                }
                let now = SystemClock.monotonic.nanoseconds
                var wake = Wakeups()
                if let f = g.holding, !s.mustYield(g, f, now: now, configuration) {
                    if !first { s.guests[guest]!.waiting -= 1 }
                    s.guests[guest]!.active += 1
                    s.guests[guest]!.ranThisTurn = true
                    return (FunctionLease(guest: guest, function: f, generation: s.functions[f].generation), wake, nil)
                }
                if first {
                    s.guests[guest]!.waiting += 1
                    if g.waitStart == 0 { s.guests[guest]!.waitStart = now }
                }
                wake = dispatch(&s, now: now)
                // Granted by this very decision: no need to park.
                if let f = s.guests[guest]!.holding {
                    wake.parkers.removeAll { $0 === g.parker }
                    s.guests[guest]!.waiting -= 1
                    s.guests[guest]!.active += 1
                    s.guests[guest]!.ranThisTurn = true
                    return (FunctionLease(guest: guest, function: f, generation: s.functions[f].generation), wake, nil)
                }
                return (nil, wake, g.parker)
            }
            wake.deliver()
            if let lease { return lease }
            if first { try? watchdogBell.signal() }
            first = false
            _ = try? parker?.wait(timeoutMilliseconds: 100)
            _ = try? parker?.drain()
        }
    }

    /// Runs `body` on the function's model and registers, if `lease` is still valid.
    public func withFunction<R>(_ lease: FunctionLease,
                                _ body: (inout Model, inout GuestContext<Model.Rules>) -> R) throws(SchedulerError) -> R {
        let result = functions[lease.function].core.withLock { core -> R? in
            guard core.generation == lease.generation, core.registers?.guest == lease.guest else { return nil }
            return body(&core.model, &core.registers!)
        }
        guard let result else { throw .cutOff(lease.guest) }
        return result
    }

    /// Ends a batch: a reusable point of the guest's function if no other batch of it is inside
    /// (GHT-SCH-04); the turn ends here if the policy says so and another guest waits.
    ///
    /// - Throws: ``SchedulerError/cutOff(_:)`` if the guest was cut off meanwhile: the batch's
    ///   results must be thrown away (its queue breaks).
    public func finishBatch(_ lease: FunctionLease, requests: Int, bytes: Int, denied: Int = 0) throws(SchedulerError) {
        let wake = try state.withLock { s throws(SchedulerError) -> Wakeups in
            guard let g = s.guests[lease.guest] else { throw .unknownGuest(lease.guest) }
            guard !g.cutOff, g.holding == lease.function, s.functions[lease.function].generation == lease.generation else {
                throw .cutOff(lease.guest)
            }
            s.guests[lease.guest]!.active -= 1
            s.guests[lease.guest]!.statistics.requests += UInt64(requests)
            s.guests[lease.guest]!.statistics.bytes += UInt64(bytes)
            s.guests[lease.guest]!.statistics.batches += 1
            s.guests[lease.guest]!.statistics.denied += UInt64(denied)
            let now = SystemClock.monotonic.nanoseconds
            if case .deficitRoundRobin(let unit, let quantum) = configuration.policy {
                s.guests[lease.guest]!.deficit -= Int64(unit == .requests ? requests : bytes)
                // Alone on the function, a guest starts a new round rather than running up a
                // debt that would stall it later (the GVT-g stale-accounting bug).
                if s.guests[lease.guest]!.deficit <= 0 {
                    if !s.mustYield(s.guests[lease.guest]!, lease.function, now: now, configuration) {
                        s.guests[lease.guest]!.deficit = Int64(quantum) * Int64(g.weight)
                    } else if !s.anyWaiterCanPay(for: lease.function, quantum) {
                        // No waiter can pay for a batch this round: each sits it out with one
                        // more quantum, and the holder goes on with its next round
                        // (Shreedhar–Varghese).
                        s.giveWaitersARound(for: lease.function, quantum)
                        s.guests[lease.guest]!.deficit = s.allowance(s.guests[lease.guest]!, quantum)
                    }
                }
            }
            return g.active == 1 ? dispatch(&s, now: now) : Wakeups()
        }
        wake.deliver()
    }

    /// `guest` has no work left for now (its queues went idle): its turn ends and its function
    /// goes to the next waiting guest (work-conserving). Nothing happens while a batch of it
    /// is inside.
    public func release(_ guest: DomainID) {
        let wake = state.withLock { s -> Wakeups in
            guard let g = s.guests[guest], g.active == 0, g.waiting == 0, let f = g.holding else { return Wakeups() }
            let now = SystemClock.monotonic.nanoseconds
            endTurn(&s, guest, f, now: now)
            s.guests[guest]!.deficit = 0
            return dispatch(&s, now: now)
        }
        wake.deliver()
    }

    /// Ends `guest`'s turn on `f`: the function is idle, the guest goes to the back.
    func endTurn(_ s: inout SchedulerState, _ guest: DomainID, _ f: Int, now: UInt64) {
        // GHT-SCH-05: the context is saved (queue positions moved during the turn).
        if let saved = functions[f].core.withLock({ $0.registers }), saved.guest == guest { contexts.withLock { $0[guest] = saved } }
        s.guests[guest]!.holding = nil
        s.guests[guest]!.statistics.holdNanoseconds += now &- s.functions[f].turnStart
        s.nextTicket += 1
        s.guests[guest]!.ticket = s.nextTicket
        s.functions[f].holder = nil
        s.functions[f].yieldAsked = nil
        returnToBackEnd(&s, f, from: guest)
        functions[f].publish(.idle, owner: nil, turns: s.functions[f].turns, now: now)
    }

    /// GHT-LED-05: the turn's use of the VF ends and its share is withdrawn.
    func returnToBackEnd(_ s: inout SchedulerState, _ f: Int, from guest: DomainID) {
        do {
            try ledger.endUse(.virtualFunction(f), by: guest)
            try ledger.unshare(.virtualFunction(f), by: .backEnd, from: [guest])
        } catch {
            s.ledgerRefusals += 1
        }
    }

    /// The scheduling decision: takes functions back from holders whose turn is over at a
    /// reusable point, starts the cut-off clock for those still busy, and gives every free
    /// function to the waiting guest first in line. Returns the parkers to wake.
    func dispatch(_ s: inout SchedulerState, now: UInt64) -> Wakeups {
        var wake = Wakeups()
        for f in s.functions.indices {
            if let h = s.functions[f].holder, let holder = s.guests[h] {
                guard s.mustYield(holder, f, now: now, configuration) else {
                    s.functions[f].yieldAsked = nil
                    continue
                }
                if holder.active > 0 {
                    // GHT-SCH-08: the cut-off clock runs only while another guest waits for `f`
                    // (not for a remap nobody waits on).
                    if s.nextWaiter(for: f) == nil {
                        s.functions[f].yieldAsked = nil
                    } else if s.functions[f].yieldAsked == nil {
                        s.functions[f].yieldAsked = now
                    }
                    continue
                }
                s.guests[h]!.statistics.preemptions += 1
                endTurn(&s, h, f, now: now)
            }
            guard var next = s.nextWaiter(for: f) else { continue }
            if case .deficitRoundRobin(_, let quantum) = configuration.policy, s.anyWaiterCanPay(for: f, quantum) {
                // A waiter whose debt this round's quantum does not pay off sits the round out:
                // it gets the quantum and goes to the back; otherwise a quantum smaller than a
                // batch would give one batch per turn whatever the weights (Shreedhar–Varghese).
                while s.allowance(s.guests[next]!, quantum) <= 0 {
                    s.guests[next]!.deficit = s.allowance(s.guests[next]!, quantum)
                    s.nextTicket += 1
                    s.guests[next]!.ticket = s.nextTicket
                    guard let following = s.nextWaiter(for: f) else { break }
                    next = following
                }
            }
            grant(&s, f, to: next, now: now, &wake)
            wake.parkers.append(s.guests[next]!.parker)
        }
        s.decisions += 1
        s.decisionNanoseconds += SystemClock.monotonic.nanoseconds &- now
        return wake
    }

    /// Gives `f` to `guest` for a turn, switching the function's context (GHT-SCH-05). A
    /// function whose model is not reusable here is a guest's broken promise (a request
    /// started and never finished): that guest is cut off and the function scrubbed first
    /// (GHT-SCH-04: never a switch with a request in flight).
    func grant(_ s: inout SchedulerState, _ f: Int, to guest: DomainID, now: UInt64, _ wake: inout Wakeups) {
        let (reusable, loaded) = functions[f].core.withLock { ($0.model.isReusable, $0.registers?.guest) }
        if !reusable {
            functions[f].core.withLock { $0.refusedSwitches += 1 }
            cutOff(&s, loaded, f, now: now, &wake)
        }
        // The outgoing context was saved when its turn ended; the incoming one is restored
        // unless the function still holds exactly it.
        guard let incoming = contexts.withLock({ $0[guest] }) else { return }
        let generation = functions[f].core.withLock { core -> UInt64 in
            if core.registers != incoming { _ = core.switchContext(to: incoming) }
            core.generation &+= 1
            return core.generation
        }
        // GHT-LED-01: for its turn the VF is shared with its holder alone, and in use by it.
        do {
            try ledger.share(.virtualFunction(f), by: .backEnd, with: [guest])
            try ledger.beginUse(.virtualFunction(f), by: guest)
        } catch {
            s.ledgerRefusals += 1
        }
        s.functions[f].holder = guest
        s.functions[f].turnStart = now
        s.functions[f].yieldAsked = nil
        s.functions[f].generation = generation
        s.functions[f].turns += 1
        var g = s.guests[guest]!
        g.holding = f
        g.ranThisTurn = false
        g.statistics.turns += 1
        g.statistics.waitNanoseconds += now &- g.waitStart
        g.waitStart = 0
        if case .deficitRoundRobin(_, let quantum) = configuration.policy { g.deficit = s.allowance(g, quantum) }
        s.guests[guest] = g
        functions[f].publish(.busy, owner: guest, turns: s.functions[f].turns, now: now)
    }

    /// GHT-SCH-08: cuts `culprit` off `f`: the function is reset and scrubbed (the model
    /// forgets what was in flight, the registers are cleared, the old lease is void), the
    /// guest's waiting threads fail, and its callback runs after the lock is released.
    func cutOff(_ s: inout SchedulerState, _ culprit: DomainID?, _ f: Int, now: UInt64, _ wake: inout Wakeups) {
        functions[f].publish(.scrubbing, owner: culprit, turns: s.functions[f].turns, now: now)
        let generation = functions[f].core.withLock { core -> UInt64 in
            core.scrub()
            return core.generation
        }
        s.functions[f].generation = generation
        s.functions[f].holder = nil
        s.functions[f].yieldAsked = nil
        if let culprit, var g = s.guests[culprit] {
            if g.holding == f {
                returnToBackEnd(&s, f, from: culprit)
                g.holding = nil
                g.statistics.holdNanoseconds += now &- s.functions[f].turnStart
            }
            g.cutOff = true
            g.statistics.cutOff = true
            s.guests[culprit] = g
            wake.parkers.append(g.parker)
            if let callback = g.onCutOff { wake.cutOffs.append((culprit, callback)) }
        }
        // `now`, not a later reading: the next holder's busy state is published with `now` too,
        // and since never goes back (GHT-SCH-03).
        functions[f].publish(.idle, owner: nil, turns: s.functions[f].turns, now: now)
    }
}

/// What to do once the scheduler's lock is released: wake parked guests, tell cut-off ones.
struct Wakeups {
    var parkers: [Doorbell] = []
    var cutOffs: [(DomainID, @Sendable (DomainID) -> Void)] = []

    func deliver() {
        for p in parkers { try? p.signal() }
        for (guest, callback) in cutOffs { callback(guest) }
    }
}

extension SchedulerState {
    /// Whether `g` must give up function `f` at its next reusable point.
    func mustYield(_ g: GuestRecord, _ f: Int, now: UInt64, _ configuration: SchedulerConfiguration) -> Bool {
        // GHT-SCH-09: a function the mapping took away goes back at once.
        guard g.allows(f) else { return true }
        guard g.ranThisTurn else { return false }
        var over = now &- functions[f].turnStart >= configuration.sliceNanoseconds
        if case .deficitRoundRobin = configuration.policy, g.deficit <= 0 { over = true }
        guard over else { return false }
        for i in guests.live where guests.slots[i]!.waits(for: f) && guests.slots[i]!.id != g.id {
            return true
        }
        return false
    }

    /// The waiting guest allowed on `f` with the smallest ticket.
    func nextWaiter(for f: Int) -> DomainID? {
        var best: DomainID?
        var bestTicket = UInt64.max
        for i in guests.live where guests.slots[i]!.waits(for: f) {
            let ticket = guests.slots[i]!.ticket
            if ticket < bestTicket {
                bestTicket = ticket
                best = guests.slots[i]!.id
            }
        }
        return best
    }

    /// Deficit round robin: what `g` may spend in its next turn (its debt is carried, its
    /// credit is not).
    func allowance(_ g: GuestRecord, _ quantum: Int) -> Int64 { min(g.deficit, 0) + Int64(quantum) * Int64(g.weight) }

    /// Deficit round robin: whether a guest waiting for `f` can pay for a batch this round.
    func anyWaiterCanPay(for f: Int, _ quantum: Int) -> Bool {
        for i in guests.live where guests.slots[i]!.waits(for: f) && allowance(guests.slots[i]!, quantum) > 0 {
            return true
        }
        return false
    }

    /// Deficit round robin: every guest waiting for `f` gets one more quantum.
    mutating func giveWaitersARound(for f: Int, _ quantum: Int) {
        for i in guests.live where guests.slots[i]!.waits(for: f) {
            let id = guests.slots[i]!.id
            guests[id]!.deficit = allowance(guests[id]!, quantum)
        }
    }
}
