import Synchronization
import VirtioCore
import VirtioSystem

/// Live counters of one queue worker, readable from any thread.
public final class QueueStatistics: Sendable {
    let chains = Atomic<UInt64>(0)
    let batches = Atomic<UInt64>(0)
    let notifications = Atomic<UInt64>(0)
    let kicks = Atomic<UInt64>(0)
    /// CPU time of the worker thread, in nanoseconds, updated after each wake-up.
    let cpuNanoseconds = Atomic<UInt64>(0)

    public init() {}

    public var chainCount: UInt64 { chains.load(ordering: .relaxed) }
    public var batchCount: UInt64 { batches.load(ordering: .relaxed) }
    public var notificationCount: UInt64 { notifications.load(ordering: .relaxed) }
    public var kickCount: UInt64 { kicks.load(ordering: .relaxed) }
    public var cpuSeconds: Double { Double(cpuNanoseconds.load(ordering: .relaxed)) / 1e9 }
}

/// The thread serving one started queue: it waits on the kick doorbell (and a wake doorbell the
/// session uses to stop it or make it pass a quiescent point, and that completions of kept
/// requests ring), drains the queue in batches, and signals the call doorbell when the driver
/// wants a notification. Polling (``QueueExecution/polling(idleMicroseconds:)``), it spins
/// with kicks suppressed while there is work and sleeps on the kick once idle.
///
/// Once the queue breaks, the worker never touches it again (GHT-BRK-02): it reports the error
/// once and only waits to be stopped.
final class QueueWorker: @unchecked Sendable {
    let index: Int
    let statistics = QueueStatistics()
    private let wake: Doorbell
    private let poller: Poller
    private let control = Control()
    private var thread: WorkerThread?

    /// State shared with the thread.
    private final class Control: Sendable {
        let stopping = Atomic<Bool>(false)
        let finalState = Locked<QueueState?>(nil)
        /// Kept requests abandoned at stop (GHT-ASY-04).
        let abandoned = Atomic<Int>(0)
        /// The device's completion event, once watched (GHT-ASY-07).
        let completionEvent = Locked<Doorbell?>(nil)
    }

    private static let kickToken: UInt64 = 0, wakeToken: UInt64 = 1, completionToken: UInt64 = 2

    /// Starts serving `processor` on a new thread.
    ///
    /// - Parameters:
    ///   - kick: the available-buffer doorbell (front-end to back-end).
    ///   - call: the used-buffer doorbell (back-end to front-end), if the front-end gave one.
    ///   - execution: sleeping on the kick, or polling (GHT-ASY-08).
    ///   - drainTimeoutMilliseconds: how long ``stop()`` waits for requests the device kept.
    ///   - startThread: how the worker thread is started; its failure is this initializer's
    ///     error (GHT-LIM-41), never a trap.
    ///   - onBroken: called once, on the worker thread, with the violation that broke the queue.
    ///   - onKickLost: called once, on the worker thread, when the kick descriptor hangs up or
    ///     fails with nothing to read; the worker stops watching it instead of spinning
    ///     (GHT-LIVE-05) and waits to be stopped.
    init<Queue: DeviceQueue & ~Copyable>(processor: consuming QueueProcessor<Queue>, kick: Doorbell, call: Doorbell?,
                             batchLimit: Int = 64, execution: QueueExecution = .sleeping, drainTimeoutMilliseconds: Int = 5_000,
                             startThread: (String, @escaping @Sendable () -> Void) throws(SystemError) -> WorkerThread = { name, body throws(SystemError) in
                                 try WorkerThread.start(name: name, body)
                             },
                             onBroken: @escaping @Sendable (VirtqueueError) -> Void,
                             onKickLost: @escaping @Sendable () -> Void = {}) throws(SystemError) {
        index = processor.index
        wake = try Doorbell()
        poller = try Poller()
        try poller.add(kick.fd, token: Self.kickToken)
        try poller.add(wake.fd, token: Self.wakeToken)
        processor.inFlight.wake = wake
        let loop = WorkerLoop(statistics: statistics, control: control, poller: poller, wake: wake, kick: kick, call: call,
                              batchLimit: batchLimit, pollBudget: execution.pollBudgetNanoseconds,
                              drainTimeout: UInt64(max(0, drainTimeoutMilliseconds)) * 1_000_000,
                              onBroken: onBroken, onKickLost: onKickLost)
        let box = ProcessorBox(processor)
        thread = try startThread("vq\(index)") {
            var processor = box.take()
            loop.run(&processor)
        }
    }

    /// Watches the device's completion event beside the kick (GHT-ASY-07).
    func watchCompletions(_ event: Doorbell) throws(SystemError) {
        control.completionEvent.withLock { $0 = event }
        try poller.add(event.fd, token: Self.completionToken)
    }

    /// Wakes the worker so that it passes a quiescent point (pending grant revocations).
    func nudge() { try? wake.signal() }

    /// A doorbell the device rings to make the worker drain again.
    var doorbell: QueueDoorbell { QueueDoorbell(wake) }

    /// Kept requests the last ``stop()`` abandoned (GHT-ASY-04).
    var abandonedAtStop: Int { control.abandoned.load(ordering: .relaxed) }

    /// Stops the worker and waits for it, and for the requests the device kept (up to the drain
    /// timeout); returns where the queue stopped (``QueueState``), or `nil` when the worker
    /// thread never ran.
    @discardableResult
    func stop() -> QueueState? {
        control.stopping.store(true, ordering: .releasing)
        try? wake.signal()
        thread?.join()
        thread = nil
        return control.finalState.withLock { $0 }
    }

    deinit { stop() }

    /// The worker thread's loop and what it needs, apart from the processor it owns.
    private struct WorkerLoop: Sendable {
        let statistics: QueueStatistics
        let control: Control
        let poller: Poller
        let wake: Doorbell
        let kick: Doorbell
        let call: Doorbell?
        let batchLimit: Int
        let pollBudget: UInt64?
        let drainTimeout: UInt64
        let onBroken: @Sendable (VirtqueueError) -> Void
        let onKickLost: @Sendable () -> Void

        func run<Queue: DeviceQueue & ~Copyable>(_ processor: inout QueueProcessor<Queue>) {
            var events: [PollEvent] = []
            events.reserveCapacity(4)
            var broken = false
            var stopDeadline: UInt64?
            // Chains made available before the queue started are processed even if it is
            // stopped at once: the first drain comes before the first look at `stopping`.
            while true {
                if !broken {
                    do throws(VirtqueueError) {
                        if stopDeadline == nil {
                            try serve(&processor)
                        } else {
                            // Stopping: no new chain is popped; kept requests still complete
                            // (the device's completion event is still watched).
                            if try processor.collectCompletions() { signalCall() }
                        }
                    } catch {
                        broken = true
                        processor.abandonOutstanding()
                        onBroken(error)
                    }
                }
                statistics.cpuNanoseconds.store(SystemClock.threadCPUTime.nanoseconds, ordering: .relaxed)
                var timeout: Int32 = -1
                if control.stopping.load(ordering: .acquiring) {
                    // GHT-ASY-04: the queue stops once nothing it popped is inside the device,
                    // or the drain timeout passed.
                    if broken || processor.outstandingCount == 0 { break }
                    let now = SystemClock.monotonic.nanoseconds
                    let deadline = stopDeadline ?? now + drainTimeout
                    stopDeadline = deadline
                    if now >= deadline {
                        control.abandoned.store(processor.abandonOutstanding(), ordering: .relaxed)
                        break
                    }
                    timeout = Int32(min(10, (deadline - now) / 1_000_000 + 1))
                }
                _ = try? poller.wait(timeoutMilliseconds: timeout, into: &events)
                handle(events, &processor)
            }
            control.finalState.withLock { $0 = processor.queue.state }
            statistics.cpuNanoseconds.store(SystemClock.threadCPUTime.nanoseconds, ordering: .relaxed)
        }

        /// One wake-up's work: a drain; polling, spins until idle for the budget, then a last
        /// drain that enables kicks again (no lost kick).
        private func serve<Queue: DeviceQueue & ~Copyable>(_ processor: inout QueueProcessor<Queue>) throws(VirtqueueError) {
            if let pollBudget {
                var idleSince = SystemClock.monotonic.nanoseconds
                while !control.stopping.load(ordering: .relaxed) {
                    processor.suppressKicks()
                    processor.serviceDevice()
                    let r = try processor.drain(batchLimit: batchLimit, polling: true)
                    account(r, processor.batches)
                    let now = SystemClock.monotonic.nanoseconds
                    if r.processed > 0 || r.notify {
                        idleSince = now
                    } else if now &- idleSince > pollBudget {
                        break
                    }
                }
            }
            let r = try processor.drain(batchLimit: batchLimit)
            account(r, processor.batches)
        }

        private func account(_ r: (processed: Int, notify: Bool), _ batches: Int) {
            if r.processed > 0 {
                statistics.chains.add(UInt64(r.processed), ordering: .relaxed)
                statistics.batches.store(UInt64(batches), ordering: .relaxed)
            }
            if r.notify { signalCall() }
        }

        private func signalCall() {
            try? call?.signal()
            statistics.notifications.add(1, ordering: .relaxed)
        }

        private func handle<Queue: DeviceQueue & ~Copyable>(_ events: [PollEvent], _ processor: inout QueueProcessor<Queue>) {
            for event in events {
                switch event.token {
                case kickToken:
                    let kicks = (try? kick.drain()) ?? 0
                    if kicks > 0 {
                        statistics.kicks.add(1, ordering: .relaxed)
                    } else if event.isHangup || event.isError {
                        // Level-triggered: a hung-up descriptor is reported on every wait.
                        try? poller.remove(kick.fd)
                        onKickLost()
                    }
                case completionToken:
                    if let event = control.completionEvent.withLock({ $0 }) { _ = try? event.drain() }
                    processor.serviceDevice()
                default:
                    _ = try? wake.drain()
                }
            }
        }
    }
}

/// Hands a (non-Sendable) processor to the worker thread exactly once.
private final class ProcessorBox<Queue: DeviceQueue & ~Copyable>: @unchecked Sendable {
    private var processor: QueueProcessor<Queue>?
    init(_ processor: consuming QueueProcessor<Queue>) { self.processor = consume processor }
    func take() -> QueueProcessor<Queue> { processor.take()! }
}
