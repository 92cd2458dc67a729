import Synchronization
import VirtioCore
import VirtioSystem

/// Live counters of one queue worker, readable from any thread.
public final class QueueStatistics: Sendable {
    let chains = Atomic<UInt64>(0)
    let batches = Atomic<UInt64>(0)
    let notifications = Atomic<UInt64>(0)
    let kicks = Atomic<UInt64>(0)
    /// CPU time the queue's thread spent on it, in nanoseconds (a shared thread's time is split
    /// among the queues it served in each round), updated after each wake-up.
    let cpuNanoseconds = Atomic<UInt64>(0)

    public init() {}

    public var chainCount: UInt64 { chains.load(ordering: .relaxed) }
    public var batchCount: UInt64 { batches.load(ordering: .relaxed) }
    public var notificationCount: UInt64 { notifications.load(ordering: .relaxed) }
    public var kickCount: UInt64 { kicks.load(ordering: .relaxed) }
    public var cpuSeconds: Double { Double(cpuNanoseconds.load(ordering: .relaxed)) / 1e9 }
}

/// One started queue as a ``QueueThread`` serves it: its doorbells, its counters, and how its
/// stop is going. The processor itself lives in the generic subclass; the thread sees only this.
///
/// Fields marked *thread* belong to the serving thread; the rest are safe from any thread.
/// Once the queue breaks, the thread never touches it again (GHT-BRK-02): it reports the error
/// once and only waits for the stop.
class QueueTask: @unchecked Sendable {
    let index: Int
    let statistics = QueueStatistics()
    let kick: Doorbell
    let call: Doorbell?
    /// Rung by the session (stop, quiescent point), the device (``QueueDoorbell``) and by
    /// completions of kept requests posted from other threads (GHT-ASY-02).
    let wake: Doorbell
    let batchLimit: Int
    let drainTimeout: UInt64
    let onBroken: @Sendable (VirtqueueError) -> Void
    let onKickLost: @Sendable () -> Void
    let stopping = Atomic<Bool>(false)
    let finalState = Locked<QueueState?>(nil)
    /// Kept requests abandoned at the stop (GHT-ASY-04).
    let abandoned = Atomic<Int>(0)
    /// The device's completion event, once watched (GHT-ASY-07).
    let completionEvent = Locked<Doorbell?>(nil)
    /// Signalled once the thread let the queue go (its final state is set).
    let done: Doorbell
    /// *thread*: the queue broke.
    var isBroken = false
    /// *thread*: when the stop gives up on kept requests; set at the first look after the stop.
    var stopDeadline: UInt64?
    /// *thread*: whether the kick is still watched (GHT-LIVE-05).
    var isKickWatched = true
    /// The task's key on its thread (set once, before the thread first sees it).
    var threadToken: UInt64 = 0

    init(index: Int, kick: Doorbell, call: Doorbell?, batchLimit: Int, drainTimeoutMilliseconds: Int,
         onBroken: @escaping @Sendable (VirtqueueError) -> Void, onKickLost: @escaping @Sendable () -> Void) throws(SystemError) {
        self.index = index
        self.kick = kick
        self.call = call
        wake = try Doorbell()
        done = try Doorbell()
        self.batchLimit = batchLimit
        drainTimeout = UInt64(max(0, drainTimeoutMilliseconds)) * 1_000_000
        self.onBroken = onBroken
        self.onKickLost = onKickLost
    }

    /// What the thread does with the processor, as closures made where the queue's type is
    /// known: a generic class's overridden methods would run unspecialized (one vtable for every
    /// queue type: the whole drain through witness tables), these run the specialized code.
    struct Operations {
        let serve: (Bool) -> Bool
        let serviceDevice: () -> Void
        let outstanding: () -> Int
        let abandonOutstanding: () -> Int
        let finish: () -> Void
    }

    /// Set once by the subclass's initializer.
    var operations: Operations?

    /// *thread*: one wake-up's work: a drain (polling: kicks left suppressed, GHT-ASY-08), or,
    /// once stopping, only the completions of kept requests. Returns whether there was work.
    final func serve(polling: Bool) -> Bool { operations!.serve(polling) }
    /// *thread*: the device reaps its completions on this thread (GHT-ASY-07).
    final func serviceDevice() { operations!.serviceDevice() }
    /// *thread*: kept requests not completed yet.
    final var outstanding: Int { operations!.outstanding() }
    /// *thread*: ignores their completions from now on; returns how many were outstanding.
    final func abandonOutstanding() -> Int { operations!.abandonOutstanding() }
    /// *thread*: records where the queue stopped and lets the stopper go.
    final func finish() { operations!.finish() }

    /// *thread*: whether the stop may complete now: the queue broke, nothing is inside the
    /// device, or the drain timeout passed (then what is left is abandoned, GHT-ASY-04).
    func stopMayComplete(now: UInt64) -> Bool {
        if isBroken || outstanding == 0 { return true }
        let deadline = stopDeadline ?? now &+ drainTimeout
        stopDeadline = deadline
        guard now >= deadline else { return false }
        abandoned.store(abandonOutstanding(), ordering: .relaxed)
        return true
    }

    func signalCall() {
        try? call?.signal()
        statistics.notifications.add(1, ordering: .relaxed)
    }

    func account(_ r: (processed: Int, notify: Bool), batches: Int) {
        if r.processed > 0 {
            statistics.chains.add(UInt64(r.processed), ordering: .relaxed)
            statistics.batches.store(UInt64(batches), ordering: .relaxed)
        }
        if r.notify { signalCall() }
    }

    func breakQueue(_ error: VirtqueueError) {
        isBroken = true
        _ = abandonOutstanding()
        onBroken(error)
    }
}

/// A ``QueueTask`` over the processor of one queue format and translator.
final class ProcessorTask<Queue: DeviceQueue & ~Copyable>: QueueTask, @unchecked Sendable {
    private var processor: QueueProcessor<Queue>

    init(_ processor: consuming QueueProcessor<Queue>, kick: Doorbell, call: Doorbell?, batchLimit: Int, drainTimeoutMilliseconds: Int,
         onBroken: @escaping @Sendable (VirtqueueError) -> Void, onKickLost: @escaping @Sendable () -> Void) throws(SystemError) {
        let index = processor.index
        self.processor = processor
        try super.init(index: index, kick: kick, call: call, batchLimit: batchLimit, drainTimeoutMilliseconds: drainTimeoutMilliseconds,
                       onBroken: onBroken, onKickLost: onKickLost)
        self.processor.inFlight.wake = wake
        // Unowned(unsafe): the task holds its operations, and only its thread calls them while
        // the task is alive.
        operations = Operations(serve: { [unowned(unsafe) self] in self.serveQueue(polling: $0) },
                                serviceDevice: { [unowned(unsafe) self] in self.serviceQueueDevice() },
                                outstanding: { [unowned(unsafe) self] in self.processor.outstandingCount },
                                abandonOutstanding: { [unowned(unsafe) self] in self.processor.abandonOutstanding() },
                                finish: { [unowned(unsafe) self] in self.finishQueue() })
    }

    private func serveQueue(polling: Bool) -> Bool {
        guard !isBroken else { return false }
        do throws(VirtqueueError) {
            if stopDeadline != nil {
                // Stopping: no new chain is popped; kept requests still complete (the device's
                // completion event is still watched).
                let notify = try processor.collectCompletions()
                if notify { signalCall() }
                return notify
            }
            if polling { processor.suppressKicks() }
            let r = try processor.drain(batchLimit: batchLimit, polling: polling)
            account(r, batches: processor.batches)
            return r.processed > 0 || r.notify
        } catch {
            breakQueue(error)
            return false
        }
    }

    private func serviceQueueDevice() {
        guard !isBroken else { return }
        processor.serviceDevice()
    }

    private func finishQueue() {
        finalState.withLock { $0 = processor.queue.state }
        try? done.signal()
    }
}
