import VirtioSystem

// The scheduler's decision state is not generic over the device model: the decision runs on
// plain values whatever the device (no generic metadata on the hot path); the guests'
// contexts, which are generic, live beside it (``DeviceScheduler/contexts``).
/// Everything the scheduler decides on, under one lock.
struct SchedulerState {
    var guests = GuestTable()
    var functions: [FunctionRecord]
    /// Statistics of guests that left, for their final report, until their number is taken
    /// again (so at most one entry per slot).
    var departed: [DomainID: GuestStatistics] = [:]
    var nextTicket: UInt64 = 0
    var stopping = false
    var decisions: UInt64 = 0
    var decisionNanoseconds: UInt64 = 0
    var ledgerRefusals = 0

    init(functionCount: Int) {
        functions = [FunctionRecord](repeating: FunctionRecord(), count: functionCount)
    }

    /// Whether some guest waits for a function.
    var anyoneWaiting: Bool { guests.live.contains { guests.slots[$0]!.waiting > 0 && guests.slots[$0]!.holding == nil } }
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
    let parker: Doorbell
    let onCutOff: (@Sendable (DomainID) -> Void)?
    var statistics = GuestStatistics()

    static func mask(_ functions: [Int]) -> UInt64 { functions.reduce(0) { $0 | 1 << UInt64($1) } }

    func allows(_ f: Int) -> Bool { functionMask & (1 << UInt64(f)) != 0 }

    /// Waiting for a function it may use, and not holding one.
    func waits(for f: Int) -> Bool { waiting > 0 && holding == nil && !cutOff && allows(f) }

    init(id: DomainID, weight: Int, functions: [Int], ticket: UInt64,
         parker: Doorbell, onCutOff: (@Sendable (DomainID) -> Void)?) {
        self.id = id
        self.weight = weight
        functionMask = GuestRecord.mask(functions)
        self.ticket = ticket
        self.parker = parker
        self.onCutOff = onCutOff
    }
}

/// The guests by number: slot k-1 holds guest k. A departed guest's slot is taken by the next
/// guest that registers (GHT-LIM-70), so the table never outgrows the most guests registered at
/// once, and every decision walks the live guests only (`live`), not every slot ever used:
/// a decision costs in proportion to the guests there are, however many came and went.
struct GuestTable {
    private(set) var slots: [GuestRecord?] = []
    /// The slots of the guests registered now (in no particular order).
    private(set) var live: [Int] = []
    /// Slots of departed guests, taken again first.
    private var free: [Int] = []

    subscript(id: DomainID) -> GuestRecord? {
        get {
            let i = Int(id.rawValue) &- 1
            return slots.indices.contains(i) ? slots[i] : nil
        }
        _modify {
            // Only registered guests are changed in place; `insert` and `remove` add and drop.
            let i = Int(id.rawValue) - 1
            precondition(slots.indices.contains(i) && slots[i] != nil, "guest \(id) is not registered")
            yield &slots[i]
            precondition(slots[i] != nil, "a guest is dropped with remove(_:)")
        }
    }

    /// Registers the record `make` builds for the number it is given: a departed guest's slot
    /// if there is one, a new slot otherwise.
    mutating func insert(_ make: (DomainID) -> GuestRecord) -> DomainID {
        let i = free.popLast() ?? slots.count
        if i == slots.count { slots.append(nil) }
        let id = DomainID(UInt16(i + 1))
        slots[i] = make(id)
        live.append(i)
        return id
    }

    /// Drops a registered guest; its slot and number go to the next guest that registers.
    mutating func remove(_ id: DomainID) {
        let i = Int(id.rawValue) - 1
        guard slots.indices.contains(i), slots[i] != nil else { return }
        slots[i] = nil
        if let k = live.firstIndex(of: i) { live.swapAt(k, live.count - 1); live.removeLast() }
        free.append(i)
    }

    /// The guests registered now.
    var count: Int { live.count }
    var ids: [DomainID] { live.sorted().map { DomainID(UInt16($0 + 1)) } }
    var parkers: [Doorbell] { live.map { slots[$0]!.parker } }
    /// The registered records.
    var records: [GuestRecord] { live.map { slots[$0]! } }
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
