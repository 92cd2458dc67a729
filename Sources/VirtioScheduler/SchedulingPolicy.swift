/// How a scheduler orders the guests waiting for a virtual function and how long a turn lasts
/// (GHT-SCH-06, GHT-SCH-07).
public enum SchedulingPolicy: Hashable, Sendable, CustomStringConvertible {
    /// Equal turns in arrival order; a turn ends when the time slice is used up and another
    /// guest waits.
    case roundRobin
    /// Deficit round robin (Shreedhar–Varghese): each turn adds `quantum` × weight to the
    /// guest's deficit, each finished batch takes its cost, and a turn ends when the deficit is
    /// spent (or the slice is) and another guest waits. Overspending carries into the next
    /// turn, so shares converge on the weights.
    case deficitRoundRobin(unit: CostUnit, quantum: Int)

    /// What a turn's deficit counts.
    public enum CostUnit: String, Hashable, Sendable {
        case requests, bytes
    }

    public var description: String {
        switch self {
        case .roundRobin: "rr"
        case .deficitRoundRobin(let unit, let quantum): "drr(\(unit.rawValue), quantum \(quantum))"
        }
    }
}

/// Which virtual functions a guest may use (GHT-SCH-01).
public enum FunctionMapping: Hashable, Sendable {
    /// 1:1: each guest gets a function of its own; a guest beyond the functions is refused.
    case oneToOne
    /// 1:n: every guest time-shares function `index`.
    case shared(Int)
    /// n:m: every guest may use any function of the pool; an idle function takes the next
    /// waiting guest (work-conserving).
    case pool
}

/// A scheduler's settings.
public struct SchedulerConfiguration: Sendable {
    public var policy: SchedulingPolicy
    public var mapping: FunctionMapping
    /// How long a turn lasts at least when others wait (CLOCK_MONOTONIC nanoseconds).
    public var sliceNanoseconds: UInt64
    /// How long a guest asked to yield may take to reach a reusable point before it is cut off
    /// (GHT-SCH-08).
    public var cutOffNanoseconds: UInt64
    /// Guests registered at once (GHT-LIM-70); one more is refused with
    /// ``SchedulerError/tooManyGuests(_:)``. At most 65535 (a guest is a 16-bit domain).
    public var guestLimit: Int {
        didSet { guestLimit = min(max(guestLimit, 1), Int(UInt16.max)) }
    }

    public init(policy: SchedulingPolicy = .roundRobin, mapping: FunctionMapping = .pool,
                sliceNanoseconds: UInt64 = 2_000_000, cutOffNanoseconds: UInt64 = 100_000_000, guestLimit: Int = 1024) {
        self.policy = policy
        self.mapping = mapping
        self.sliceNanoseconds = sliceNanoseconds
        self.cutOffNanoseconds = cutOffNanoseconds
        self.guestLimit = min(max(guestLimit, 1), Int(UInt16.max))
    }
}

/// Why the scheduler refused a guest.
public enum SchedulerError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The guest was cut off (GHT-SCH-08): its lease is void, its requests must not complete.
    case cutOff(DomainID)
    /// The guest is not registered (or left).
    case unknownGuest(DomainID)
    /// A 1:1 mapping has no function left for a new guest, or a mapping names no function.
    case noFunction
    /// A mapping names a function the device does not have.
    case functionOutOfRange(Int)
    /// The scheduler stopped.
    case stopped
    /// The scheduler could not get what it runs on (an eventfd, its VFs in the ledger).
    case resources(String)
    /// As many guests as the limit are registered (GHT-LIM-70).
    case tooManyGuests(Int)

    public var description: String {
        switch self {
        case .cutOff(let g): "\(g) was cut off"
        case .unknownGuest(let g): "\(g) is not registered"
        case .noFunction: "no virtual function for the guest"
        case .functionOutOfRange(let i): "no virtual function \(i)"
        case .stopped: "the scheduler stopped"
        case .resources(let why): "the scheduler could not start: \(why)"
        case .tooManyGuests(let limit): "\(limit) guests are registered already"
        }
    }
}

/// A guest's right to one virtual function for one turn; void once the turn ends or the guest
/// is cut off.
public struct FunctionLease: Hashable, Sendable {
    public let guest: DomainID
    public let function: Int
    let generation: UInt64
}

/// What a guest got from the scheduler so far.
public struct GuestStatistics: Hashable, Sendable {
    public var requests: UInt64 = 0
    public var bytes: UInt64 = 0
    public var batches: UInt64 = 0
    public var turns: UInt64 = 0
    /// Requests a device model denied.
    public var denied: UInt64 = 0
    /// Time spent waiting for a function (nanoseconds).
    public var waitNanoseconds: UInt64 = 0
    /// Time holding a function (nanoseconds, summed over turns).
    public var holdNanoseconds: UInt64 = 0
    public var preemptions: UInt64 = 0
    public var cutOff = false
}
