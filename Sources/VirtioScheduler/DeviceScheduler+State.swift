import VirtioTransport

extension DeviceScheduler {
    /// Everything the scheduler decides on, under one lock.
    struct State {
        var guests: [DomainID: GuestRecord] = [:]
        var functions: [FunctionRecord]
        /// Statistics of guests that left, for their final report.
        var departed: [DomainID: GuestStatistics] = [:]
        var nextGuest: UInt16 = 0
        var nextTicket: UInt64 = 0
        var stopping = false
        var decisions: UInt64 = 0
        var decisionNanoseconds: UInt64 = 0

        init(functionCount: Int) {
            functions = [FunctionRecord](repeating: FunctionRecord(), count: functionCount)
        }

        /// Whether some guest waits for a function.
        var anyoneWaiting: Bool { guests.values.contains { $0.waiting > 0 && $0.holding == nil } }
    }

    struct GuestRecord {
        let id: DomainID
        var weight: Int
        /// The functions the mapping allows (GHT-SCH-01).
        var functions: [Int]
        /// The function whose lease the guest holds.
        var holding: Int?
        /// Batches of the guest inside its function now.
        var active = 0
        /// Threads of the guest waiting in ``obtain(_:)``.
        var waiting = 0
        var waitStart: UInt64 = 0
        /// Round-robin order: the smallest ticket among the waiters goes next; a turn that
        /// ends takes a new ticket (to the back).
        var ticket: UInt64
        /// Deficit round robin: what is left of this turn's allowance (may go negative by
        /// one batch; the overspend is carried).
        var deficit: Int64 = 0
        /// Whether the guest ran a batch in its current turn (a turn is never taken back
        /// before its first batch).
        var ranThisTurn = false
        var cutOff = false
        var context: GuestContext<Model.Rules>
        let parker: EventNotifier
        let onCutOff: (@Sendable (DomainID) -> Void)?
        var statistics = GuestStatistics()

        init(id: DomainID, weight: Int, functions: [Int], ticket: UInt64, context: GuestContext<Model.Rules>,
             parker: EventNotifier, onCutOff: (@Sendable (DomainID) -> Void)?) {
            self.id = id
            self.weight = weight
            self.functions = functions
            self.ticket = ticket
            self.context = context
            self.parker = parker
            self.onCutOff = onCutOff
        }
    }

    struct FunctionRecord {
        /// The guest holding the lease.
        var holder: DomainID?
        var turnStart: UInt64 = 0
        /// When the holder was first asked to yield (its turn over, another guest waiting)
        /// while it had batches inside: the cut-off clock (GHT-SCH-08).
        var yieldAsked: UInt64?
        /// Moves on with every turn and every cut-off: a lease of an older generation is void.
        var generation: UInt64 = 0
        var turns: UInt64 = 0
    }
}
