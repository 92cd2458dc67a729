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
/// session uses to stop it or make it pass a quiescent point), drains the queue in batches,
/// and signals the call doorbell when the driver wants a notification.
///
/// Once the queue breaks, the worker never touches it again (GHT-BRK-02): it reports the error
/// once and only waits to be stopped.
final class QueueWorker: @unchecked Sendable {
    let index: Int
    let statistics = QueueStatistics()
    private let wake: Doorbell
    private let control = Control()
    private var thread: WorkerThread?

    /// State shared with the thread.
    private final class Control: Sendable {
        let stopping = Atomic<Bool>(false)
        let finalState = Locked<QueueState?>(nil)
    }

    /// Starts serving `processor` on a new thread.
    ///
    /// - Parameters:
    ///   - kick: the available-buffer doorbell (front-end to back-end).
    ///   - call: the used-buffer doorbell (back-end to front-end), if the front-end gave one.
    ///   - startThread: how the worker thread is started; its failure is this initializer's
    ///     error (GHT-LIM-41), never a trap.
    ///   - onBroken: called once, on the worker thread, with the violation that broke the queue.
    ///   - onKickLost: called once, on the worker thread, when the kick descriptor hangs up or
    ///     fails with nothing to read; the worker stops watching it instead of spinning
    ///     (GHT-LIVE-05) and waits to be stopped.
    init<Queue: DeviceQueue & ~Copyable>(processor: consuming QueueProcessor<Queue>, kick: Doorbell, call: Doorbell?,
                             batchLimit: Int = 64,
                             startThread: (String, @escaping @Sendable () -> Void) throws(SystemError) -> WorkerThread = { name, body throws(SystemError) in
                                 try WorkerThread.start(name: name, body)
                             },
                             onBroken: @escaping @Sendable (VirtqueueError) -> Void,
                             onKickLost: @escaping @Sendable () -> Void = {}) throws(SystemError) {
        index = processor.index
        wake = try Doorbell()
        let poller = try Poller()
        try poller.add(kick.fd, token: 0)
        try poller.add(wake.fd, token: 1)
        let statistics = self.statistics, control = self.control, wake = self.wake
        let box = ProcessorBox(processor)
        thread = try startThread("vq\(index)") {
            var processor = box.take()
            var events: [PollEvent] = []
            events.reserveCapacity(4)
            var broken = false
            // Chains made available before the queue started are processed even if it is
            // stopped at once: the first drain comes before the first look at `stopping`.
            while true {
                if !broken {
                    do throws(VirtqueueError) {
                        let r = try processor.drain(batchLimit: batchLimit)
                        if r.processed > 0 {
                            statistics.chains.add(UInt64(r.processed), ordering: .relaxed)
                            statistics.batches.store(UInt64(processor.batches), ordering: .relaxed)
                        }
                        if r.notify {
                            try? call?.signal()
                            statistics.notifications.add(1, ordering: .relaxed)
                        }
                    } catch {
                        broken = true
                        onBroken(error)
                    }
                }
                statistics.cpuNanoseconds.store(SystemClock.threadCPUTime.nanoseconds, ordering: .relaxed)
                if control.stopping.load(ordering: .acquiring) { break }
                _ = try? poller.wait(timeoutMilliseconds: -1, into: &events)
                for event in events {
                    if event.token == 0 {
                        let kicks = (try? kick.drain()) ?? 0
                        if kicks > 0 {
                            statistics.kicks.add(1, ordering: .relaxed)
                        } else if event.isHangup || event.isError {
                            // Level-triggered: a hung-up descriptor is reported on every wait.
                            try? poller.remove(kick.fd)
                            onKickLost()
                        }
                    } else {
                        _ = try? wake.drain()
                    }
                }
            }
            control.finalState.withLock { $0 = processor.queue.state }
            statistics.cpuNanoseconds.store(SystemClock.threadCPUTime.nanoseconds, ordering: .relaxed)
        }
    }

    /// Wakes the worker so that it passes a quiescent point (pending grant revocations).
    func nudge() { try? wake.signal() }

    /// A doorbell the device rings to make the worker drain again.
    var doorbell: QueueDoorbell { QueueDoorbell(wake) }

    /// Stops the worker and waits for it; returns where the queue stopped (``QueueState``), or
    /// `nil` when the worker thread never ran.
    @discardableResult
    func stop() -> QueueState? {
        control.stopping.store(true, ordering: .releasing)
        try? wake.signal()
        thread?.join()
        thread = nil
        return control.finalState.withLock { $0 }
    }

    deinit { stop() }
}

/// Hands a (non-Sendable) processor to the worker thread exactly once.
private final class ProcessorBox<Queue: DeviceQueue & ~Copyable>: @unchecked Sendable {
    private var processor: QueueProcessor<Queue>?
    init(_ processor: consuming QueueProcessor<Queue>) { self.processor = consume processor }
    func take() -> QueueProcessor<Queue> { processor.take()! }
}
