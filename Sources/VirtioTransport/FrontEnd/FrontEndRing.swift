import VirtioCore

/// A front-end queue's driver side in either format. Each operation takes the queue out of
/// the enum, runs, and puts it back (the front-end's own path, not the back-end's hot path).
enum FrontEndRing {
    case split(SplitDriverQueue)
    case packed(PackedDriverQueue)
    case empty

    @inline(__always)
    @discardableResult
    private mutating func run<R>(_ split: (inout SplitDriverQueue) throws(DriverQueueError) -> R,
                                 _ packed: (inout PackedDriverQueue) throws(DriverQueueError) -> R) throws(DriverQueueError) -> R {
        switch self {
        case .split(var q):
            self = .empty
            defer { self = .split(q) }
            return try split(&q)
        case .packed(var q):
            self = .empty
            defer { self = .packed(q) }
            return try packed(&q)
        case .empty:
            preconditionFailure("driver queue re-entered")
        }
    }

    mutating func add(readable: [BufferSegment], writable: [BufferSegment], token: UInt64) throws(DriverQueueError) {
        try run({ q throws(DriverQueueError) in try q.add(readable: readable, writable: writable, token: token) },
                { q throws(DriverQueueError) in try q.add(readable: readable, writable: writable, token: token) })
    }

    mutating func publish() {
        try! run({ $0.publish() }, { $0.publish() })
    }

    mutating func kickNeeded() -> Bool {
        try! run({ $0.kickNeeded() }, { $0.kickNeeded() })
    }

    mutating func reapAllUsed(_ body: (UsedBuffer) -> Void) throws(DriverQueueError) {
        try run({ q throws(DriverQueueError) in try q.reapAllUsed(body) }, { q throws(DriverQueueError) in try q.reapAllUsed(body) })
    }

    mutating func enableUsedNotifications() -> Bool {
        try! run({ $0.enableUsedNotifications() }, { $0.enableUsedNotifications() })
    }

    mutating func disableUsedNotifications() {
        try! run({ $0.disableUsedNotifications() }, { $0.disableUsedNotifications() })
    }

    mutating func detachAllOutstanding() -> [UInt64] {
        try! run({ $0.detachAllOutstanding() }, { $0.detachAllOutstanding() })
    }
}

extension FrontEndRing {
    /// The used position the driver has reached and the chains still out (see
    /// ``FrontEndQueue/prepareResume()``).
    var resumePosition: (base: UInt32, outstanding: Int) {
        switch self {
        case .split(let q):
            // The driver's used index: every chain added and not yet taken back lies between it
            // and the next available index.
            let used = q.nextAvailIndex &- UInt16(truncatingIfNeeded: q.outstandingCount)
            return (UInt32(used), q.outstandingCount)
        case .packed(let q):
            let used = UInt32(q.nextUsedPosition.rawValue)
            return (used | used &<< 16, q.outstandingCount)
        case .empty:
            return (0, 0)
        }
    }
}
