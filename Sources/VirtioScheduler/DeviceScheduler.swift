import Synchronization
import VirtioCore
import VirtioSystem

/// Hands the virtual functions of one device to guests in turns (DESIGN §6): a guest's queue
/// work obtains a function before it starts a batch of requests and finishes the batch after;
/// a function goes to another guest only at a reusable point of its model; a holder that
/// never reaches one is cut off.
///
/// Guarantees (Spec/scheduler.md): one holder per function at a time (GHT-SCH-02); a guest
/// waits only for its own functions and nothing else blocks (GHT-SCH-02); status readable
/// without the lock (GHT-SCH-03); switches only when the model is reusable (GHT-SCH-04), with
/// the context saved and restored (GHT-SCH-05); turns by policy (GHT-SCH-06, GHT-SCH-07);
/// cut-off within the bound, the function scrubbed before its next owner (GHT-SCH-08); the
/// mapping changed at run time without losing a request (GHT-SCH-09).
public final class DeviceScheduler<Model: DeviceModel>: Sendable {
    public let configuration: SchedulerConfiguration
    public let functions: [VirtualFunction<Model>]
    let state: Locked<SchedulerState>
    /// Each guest's saved context (GHT-SCH-05); taken inside `state`'s lock, before a
    /// function's.
    let contexts = Locked<[DomainID: GuestContext<Model.Rules>]>([:])
    /// The accountant: every VF is reserved for the back-end and, for each turn, shared with
    /// and in use by its holder alone (GHT-LED-01, GHT-LED-04), so that the ledger's dump shows
    /// who holds what and a revocation of a VF in use is refused.
    public let ledger: ResourceLedger
    let watchdogBell: Doorbell
    private let watchdog = Locked<WorkerThread?>(nil)

    /// A scheduler over `functionCount` virtual functions, reserving them in `ledger`; starts
    /// its watchdog thread.
    public init(functionCount: Int, configuration: SchedulerConfiguration = SchedulerConfiguration(),
                ledger: ResourceLedger = ResourceLedger()) throws(SchedulerError) {
        precondition((1...64).contains(functionCount), "a device has 1 to 64 virtual functions")
        self.configuration = configuration
        self.ledger = ledger
        for f in 0..<functionCount {
            do { try ledger.reserve(.virtualFunction(f)) } catch { throw .resources("\(error)") }
        }
        functions = (0..<functionCount).map { VirtualFunction(index: $0) }
        state = Locked(SchedulerState(functionCount: functionCount))
        do { watchdogBell = try Doorbell() } catch { throw .resources("\(error)") }
        // The thread holds the scheduler only for one round at a time, so that a scheduler its
        // users let go of is freed (and its watchdog ends) without a call to stop().
        let thread = WorkerThread(name: "vf-watchdog") { [weak self] in
            while let scheduler = self, scheduler.watchRound() {}
        }
        watchdog.withLock { $0 = thread }
    }

    /// Stops the watchdog and waits for it; every waiting guest gets ``SchedulerError/stopped``.
    public func stop() {
        halt()
        let thread = watchdog.withLock { t -> WorkerThread? in defer { t = nil }; return t }
        thread?.join()
    }

    /// Marks the scheduler stopped and wakes everyone; the watchdog ends at its next round.
    private func halt() {
        let parkers = state.withLock { s -> [Doorbell] in
            s.stopping = true
            return s.guests.parkers
        }
        for p in parkers { try? p.signal() }
        try? watchdogBell.signal()
    }

    // Not joined here: the last reference may be dropped on the watchdog thread itself.
    deinit { halt() }

    // MARK: Guests

    /// Registers a guest with its rules and weight; the mapping decides its functions.
    ///
    /// - Parameter onCutOff: called once, on the watchdog thread, when the guest is cut off.
    public func register(rules: Model.Rules, queueCount: Int, weight: Int = 1,
                         onCutOff: (@Sendable (DomainID) -> Void)? = nil) throws(SchedulerError) -> DomainID {
        let parker: Doorbell
        do { parker = try Doorbell() } catch { throw .stopped }
        return try state.withLock { s throws(SchedulerError) -> DomainID in
            guard !s.stopping else { throw .stopped }
            // GHT-LIM-70: a bounded number of guests at once; departed guests' slots are reused.
            guard s.guests.count < configuration.guestLimit else { throw .tooManyGuests(configuration.guestLimit) }
            let allowed: [Int]
            switch configuration.mapping {
            case .pool: allowed = Array(functions.indices)
            case .shared(let f):
                guard functions.indices.contains(f) else { throw .functionOutOfRange(f) }
                allowed = [f]
            case .oneToOne:
                let taken = Set(s.guests.records.flatMap(\.functions))
                guard let free = functions.indices.first(where: { !taken.contains($0) }) else { throw .noFunction }
                allowed = [free]
            }
            s.nextTicket += 1
            let ticket = s.nextTicket
            let id = s.guests.insert { id in
                GuestRecord(id: id, weight: max(weight, 1), functions: allowed, ticket: ticket, parker: parker, onCutOff: onCutOff)
            }
            // The number is the new guest's now: what its previous holder left is not reported as its.
            s.departed[id] = nil
            contexts.withLock { $0[id] = GuestContext(guest: id, queueCount: queueCount, rules: rules) }
            return id
        }
    }

    /// GHT-SCH-09: changes the functions `guest` may use. A function it holds outside the new
    /// set stays its own until its next reusable point: nothing in flight is lost.
    public func assign(_ guest: DomainID, to allowed: [Int]) throws(SchedulerError) {
        guard !allowed.isEmpty else { throw .noFunction }
        if let bad = allowed.first(where: { !functions.indices.contains($0) }) { throw .functionOutOfRange(bad) }
        let wake = try state.withLock { s throws(SchedulerError) -> Wakeups in
            guard s.guests[guest] != nil else { throw .unknownGuest(guest) }
            s.guests[guest]!.functionMask = GuestRecord.mask(allowed)
            return dispatch(&s, now: SystemClock.monotonic.nanoseconds)
        }
        wake.deliver()
    }

    /// Records the features `guest` negotiated in its context.
    public func setFeatures(_ features: VirtioFeatures, for guest: DomainID) {
        state.withLock { _ in contexts.withLock { $0[guest]?.features = features } }
    }

    /// The guest left: its turn ends (it must have nothing in flight) and it is forgotten.
    public func unregister(_ guest: DomainID) {
        let wake = state.withLock { s -> Wakeups in
            guard let g = s.guests[guest] else { return Wakeups() }
            if let f = g.holding { endTurn(&s, guest, f, now: SystemClock.monotonic.nanoseconds) }
            s.departed[guest] = g.statistics
            s.guests.remove(guest)
            contexts.withLock { $0[guest] = nil }
            ledger.release(domain: guest)
            return dispatch(&s, now: SystemClock.monotonic.nanoseconds)
        }
        wake.deliver()
    }

    /// What `guest` got so far.
    public func statistics(of guest: DomainID) -> GuestStatistics? {
        state.withLock { s in
            guard var stats = s.guests[guest]?.statistics else { return s.departed[guest] }
            if let f = s.guests[guest]?.holding { stats.holdNanoseconds += SystemClock.monotonic.nanoseconds &- s.functions[f].turnStart }
            return stats
        }
    }

    /// The guests registered now.
    public var guests: [DomainID] { state.withLock { $0.guests.ids } }

    /// The guest slots the scheduler keeps (live guests and free slots to reuse): never more
    /// than the most guests registered at once (GHT-LIM-70).
    public var guestSlotCount: Int { state.withLock { $0.guests.slots.count } }

    /// The functions `guest` may use.
    public func functions(of guest: DomainID) -> [Int] { state.withLock { $0.guests[guest]?.functions ?? [] } }

    /// Ledger operations of turns that were refused: a scheduler bug if ever non-zero.
    public var ledgerRefusals: Int { state.withLock { $0.ledgerRefusals } }

    /// Scheduling decisions taken and the time spent in them (nanoseconds, clock reads included).
    public var decisions: (count: UInt64, nanoseconds: UInt64) { state.withLock { ($0.decisions, $0.decisionNanoseconds) } }
}
