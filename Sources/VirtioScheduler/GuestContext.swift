import VirtioCore

/// What a virtual function must hold for one guest to use it, saved when the guest's turn ends
/// and restored when its next turn begins (GHT-SCH-05): the features the guest negotiated,
/// where each of its queues stands, and the device rules its model enforces.
public struct GuestContext<Rules: Sendable & Equatable>: Sendable, Equatable {
    public var guest: DomainID
    /// The features the guest's driver accepted (FEATURES_OK).
    public var features: VirtioFeatures
    /// Per queue, where it stands once the guest's last batch on it is completed and published
    /// (GHT-QST-05): the state the queue gave with that batch, `nil` before the first. The
    /// scheduler keeps no counter of its own beside the queue.
    public var queueStates: [QueueState?]
    /// The device rules of the guest (its sectors, its address).
    public var rules: Rules

    public init(guest: DomainID, features: VirtioFeatures = [], queueCount: Int, rules: Rules) {
        self.guest = guest
        self.features = features
        queueStates = [QueueState?](repeating: nil, count: queueCount)
        self.rules = rules
    }
}

/// A virtual function's state as anyone may read it without taking the function (GHT-SCH-03).
public struct VirtualFunctionStatus: Hashable, Sendable, CustomStringConvertible {
    public enum State: UInt8, Sendable {
        /// No guest holds the function.
        case idle = 0
        /// `owner` holds the function; its requests may be in flight.
        case busy = 1
        /// The function is being reset and scrubbed after a cut-off.
        case scrubbing = 2
    }

    public var state: State
    /// The guest holding the function (busy), or the one being scrubbed away.
    public var owner: DomainID?
    /// When the function entered this state (CLOCK_MONOTONIC, nanoseconds).
    public var sinceNanoseconds: UInt64
    /// Turns handed out on this function so far.
    public var turns: UInt64

    public var description: String {
        "\(state)" + (owner.map { " \($0)" } ?? "") + " since \(sinceNanoseconds) (turn \(turns))"
    }
}
