/// The last events, oldest first, in a ring of fixed capacity: a domain that makes the ledger
/// refuse it over and over costs memory that does not grow, only older events.
struct EventLog: Sendable {
    let capacity: Int
    private var ring: [LedgerEvent] = []
    private var oldest = 0
    private(set) var nextSequence: UInt64 = 0
    /// Events pushed out of the ring (or not kept at all when the capacity is 0).
    private(set) var dropped: UInt64 = 0

    init(capacity: Int) { self.capacity = max(capacity, 0) }

    mutating func record(_ kind: LedgerEvent.Kind) {
        let event = LedgerEvent(sequence: nextSequence, kind: kind)
        nextSequence += 1
        if ring.count < capacity {
            ring.append(event)
        } else {
            dropped += 1
            guard capacity > 0 else { return }
            ring[oldest] = event
            oldest = (oldest + 1) % capacity
        }
    }

    var events: [LedgerEvent] { Array(ring[oldest...] + ring[..<oldest]) }
}
