import VirtioTransport

// The scheduler's decision state is not generic over the device model: the decision runs on
// plain values whatever the device (no generic metadata on the hot path); the guests'
// contexts, which are generic, live beside it (``DeviceScheduler/contexts``).
/// Everything the scheduler decides on, under one lock.
struct SchedulerState {
    var guests = GuestTable()
    var functions: [FunctionRecord]
    /// Statistics of guests that left, for their final report.
    var departed: [DomainID: GuestStatistics] = [:]
    var nextGuest: UInt16 = 0
    var nextTicket: UInt64 = 0
    var stopping = false
    var decisions: UInt64 = 0
    var decisionNanoseconds: UInt64 = 0
    var ledgerRefusals = 0

    init(functionCount: Int) {
        functions = [FunctionRecord](repeating: FunctionRecord(), count: functionCount)
    }

    /// Whether some guest waits for a function.
    var anyoneWaiting: Bool { guests.slots.contains { $0 != nil && $0!.waiting > 0 && $0!.holding == nil } }
}

struct GuestRecord {
    let id: DomainID
    var weight: Int
    /// The functions the mapping allows (GHT-SCH-01), one bit each.
    var functionMask: UInt64
    var functions: [Int] { (0..<64).filter { functionMask & (1 << UInt64($0)) != 0 } }
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
    /// one batch; the overspend is carried, and a guest whose debt a quantum does not pay
    /// off sits rounds out).
    var deficit: Int64 = 0
    /// Whether the guest ran a batch in its current turn (a turn is never taken back
    /// before its first batch).
    var ranThisTurn = false
    var cutOff = false
    let parker: EventNotifier
    let onCutOff: (@Sendable (DomainID) -> Void)?
    var statistics = GuestStatistics()

    static func mask(_ functions: [Int]) -> UInt64 { functions.reduce(0) { $0 | 1 << UInt64($1) } }

    func allows(_ f: Int) -> Bool { functionMask & (1 << UInt64(f)) != 0 }

    /// Waiting for a function it may use, and not holding one.
    func waits(for f: Int) -> Bool { waiting > 0 && holding == nil && !cutOff && allows(f) }

    init(id: DomainID, weight: Int, functions: [Int], ticket: UInt64,
         parker: EventNotifier, onCutOff: (@Sendable (DomainID) -> Void)?) {
        self.id = id
        self.weight = weight
        functionMask = GuestRecord.mask(functions)
        self.ticket = ticket
        self.parker = parker
        self.onCutOff = onCutOff
    }
}

/// The guests by number (slot k-1 holds guest k; a guest that left leaves its slot
/// empty): the decision scans a plain array, with no hashing and no copies.
struct GuestTable {
    var slots: [GuestRecord?] = []

    subscript(id: DomainID) -> GuestRecord? {
        get {
            let i = Int(id.rawValue) &- 1
            return slots.indices.contains(i) ? slots[i] : nil
        }
        _modify {
            let i = Int(id.rawValue) - 1
            if i >= slots.count { slots += repeatElement(nil, count: i + 1 - slots.count) }
            yield &slots[i]
        }
    }

    var ids: [DomainID] { slots.compactMap { $0?.id } }
    var parkers: [EventNotifier] { slots.compactMap { $0?.parker } }
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
