import Synchronization
import VirtioCore
import VirtioSystem

/// The guest-physical areas of a ring the back-end writes, marked after each publication of
/// used entries while logging is on (GHT-LOG-06, GHT-LOG-07): for a split ring its used ring
/// at `log_guest_addr` (VHOST_VRING_F_LOG); for a packed ring its descriptor ring and its
/// device event area. No allocation: two fixed slots.
struct RingLogAreas: Sendable, Equatable {
    var first: (start: UInt64, length: Int) = (0, 0)
    var second: (start: UInt64, length: Int) = (0, 0)

    static let none = RingLogAreas()

    static func == (a: RingLogAreas, b: RingLogAreas) -> Bool {
        a.first == b.first && a.second == b.second
    }
}

/// A session's dirty-logging switch, shared by the session thread (which sets it) and the
/// queue workers (which mark): the log, whether VHOST_F_LOG_ALL is on, each ring's areas and
/// the SET_LOG_FD eventfd.
///
/// A worker pays one relaxed load per batch while logging is off; while it is on,
/// one lock per batch to take a ``DirtyLogBatch`` (a reference, no allocation).
final class DirtyLogControl: @unchecked Sendable {
    private struct State {
        var log: DirtyLog?
        var logAll = false
        var rings: [RingLogAreas]
        var doorbell: Doorbell?
    }

    private let isOnFlag = Atomic<Bool>(false)
    private let state: Locked<State>
    /// Writes that could not be marked (outside the memory table or the log), for the report.
    let unmarked = Atomic<UInt64>(0)

    init(queueCount: Int) {
        state = Locked(State(rings: [RingLogAreas](repeating: .none, count: queueCount)))
    }

    /// Whether the workers log: LOG_ALL is on and a log is set.
    @inline(__always)
    var isOn: Bool { isOnFlag.load(ordering: .relaxed) }

    /// The log in force, if any.
    var log: DirtyLog? { state.withLock { $0.log } }

    /// Whether VHOST_F_LOG_ALL was last set.
    var logAll: Bool { state.withLock { $0.logAll } }

    private func update(_ body: (inout State) -> Void) {
        state.withLock { s in
            body(&s)
            isOnFlag.store(s.logAll && s.log != nil, ordering: .releasing)
        }
    }

    func setLog(_ log: DirtyLog?) { update { $0.log = log } }
    func setLogAll(_ on: Bool) { update { $0.logAll = on } }
    func setDoorbell(_ doorbell: Doorbell?) { update { $0.doorbell = doorbell } }
    func setRing(_ queue: Int, _ areas: RingLogAreas) {
        update { s in if s.rings.indices.contains(queue) { s.rings[queue] = areas } }
    }
    func ring(_ queue: Int) -> RingLogAreas { state.withLock { $0.rings.indices.contains(queue) ? $0.rings[queue] : .none } }

    /// What a worker marks into for one batch of `queue`, or `nil` when logging is off.
    func batch(queue: Int) -> DirtyLogBatch? {
        state.withLock { s in
            guard s.logAll, let log = s.log else { return nil }
            return DirtyLogBatch(log: log, rings: s.rings.indices.contains(queue) ? s.rings[queue] : .none,
                                 doorbell: s.doorbell, control: self)
        }
    }
}

/// One batch's marking: the log and ring areas in force when it began.
struct DirtyLogBatch {
    let log: DirtyLog
    let rings: RingLogAreas
    let doorbell: Doorbell?
    unowned let control: DirtyLogControl
    private(set) var marked = false

    init(log: DirtyLog, rings: RingLogAreas, doorbell: Doorbell?, control: DirtyLogControl) {
        self.log = log
        self.rings = rings
        self.doorbell = doorbell
        self.control = control
    }

    /// GHT-LOG-05: every writable fragment of a completed chain, whatever its used length.
    mutating func markWritten(_ fragments: ArraySlice<HostRange>) {
        for f in fragments where f.count > 0 {
            if log.mark(host: f) { marked = true } else { control.unmarked.add(1, ordering: .relaxed) }
        }
    }

    /// GHT-LOG-06, GHT-LOG-07: the ring areas the device wrote with the used entries.
    mutating func markRings() {
        markArea(rings.first)
        markArea(rings.second)
    }

    private mutating func markArea(_ area: (start: UInt64, length: Int)) {
        guard area.length > 0 else { return }
        if log.mark(guest: area.start, length: area.length) { marked = true } else { control.unmarked.add(1, ordering: .relaxed) }
    }

    /// GHT-LOG-09: tells the front-end the log changed (SET_LOG_FD), once per batch.
    func finish() {
        if marked { try? doorbell?.signal() }
    }
}

extension DirtyLogBatch {
    /// After the used entries were published: the ring areas (when entries were added), then
    /// the front-end's eventfd.
    mutating func markPublished(usedRing: Bool) {
        if usedRing { markRings() }
        finish()
    }
}

extension QueueProcessor where Queue: ~Copyable {
    /// GHT-LOG-05: the writable fragments of the batch's chains the device completed in
    /// `process` (a kept one is marked when its completion is collected). Returns how many.
    func markCompleted(_ batch: RequestBatch, _ count: Int, into log: inout DirtyLogBatch) -> Int {
        var completed = 0
        for i in 0..<count where !batch.isKept(i) {
            log.markWritten(batch.fragments[batch.requests[i].writable])
            completed += 1
        }
        return completed
    }
}
