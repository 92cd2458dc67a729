import VirtioCore
import VirtioSystem

/// The session's handle on one started queue being served: by a thread of its own, or by a
/// thread of a ``QueueThreadPool`` (GHT-ASY-10). The thread waits on the queue's kick doorbell
/// (and a wake doorbell the session uses to stop it or make it pass a quiescent point, and that
/// completions of kept requests ring), drains the queue in batches, and signals the call
/// doorbell when the driver wants a notification.
final class QueueWorker: @unchecked Sendable {
    let index: Int
    private let task: QueueTask
    private let thread: QueueThread
    private let ownsThread: Bool
    private var isStopped = false

    /// Starts serving `processor`.
    ///
    /// - Parameters:
    ///   - kick: the available-buffer doorbell (front-end to back-end).
    ///   - call: the used-buffer doorbell (back-end to front-end), if the front-end gave one.
    ///   - execution: sleeping on the kick, or polling (GHT-ASY-08), for a thread of its own.
    ///   - pool: the threads to serve the queue on; `nil`: a thread of its own, pinned to `cpus`
    ///     when not empty.
    ///   - drainTimeoutMilliseconds: how long ``stop()`` waits for requests the device kept.
    ///   - startThread: how a thread of its own is started; its failure is this initializer's
    ///     error (GHT-LIM-41), never a trap.
    ///   - onBroken: called once, on the serving thread, with the violation that broke the queue.
    ///   - onKickLost: called once, on the serving thread, when the kick descriptor hangs up or
    ///     fails with nothing to read; the thread stops watching it instead of spinning
    ///     (GHT-LIVE-05) and waits for the stop.
    init<Queue: DeviceQueue & ~Copyable>(processor: consuming QueueProcessor<Queue>, kick: Doorbell, call: Doorbell?,
                             batchLimit: Int = 64, execution: QueueExecution = .sleeping, pool: QueueThreadPool? = nil, cpus: [Int] = [],
                             drainTimeoutMilliseconds: Int = 5_000,
                             startThread: (String, @escaping @Sendable () -> Void) throws(SystemError) -> WorkerThread = { name, body throws(SystemError) in
                                 try WorkerThread.start(name: name, body)
                             },
                             onBroken: @escaping @Sendable (VirtqueueError) -> Void,
                             onKickLost: @escaping @Sendable () -> Void = {}) throws(SystemError) {
        index = processor.index
        task = try ProcessorTask(processor, kick: kick, call: call, batchLimit: batchLimit, drainTimeoutMilliseconds: drainTimeoutMilliseconds,
                                 onBroken: onBroken, onKickLost: onKickLost)
        if let pool {
            thread = pool.leastLoaded()
            ownsThread = false
        } else {
            thread = try QueueThread(name: "vq\(index)", cpus: cpus, execution: execution, exitsWhenIdle: true, startThread: startThread)
            ownsThread = true
        }
        do {
            try thread.add(task)
        } catch {
            if ownsThread { thread.shutDown() }
            throw error
        }
    }

    var statistics: QueueStatistics { task.statistics }

    /// Watches the device's completion event beside the kick (GHT-ASY-07).
    func watchCompletions(_ event: Doorbell) throws(SystemError) { try thread.watchCompletions(of: task, event) }

    /// Wakes the serving thread so that the queue passes a quiescent point (pending grant revocations).
    func nudge() { try? task.wake.signal() }

    /// A doorbell the device rings to make the queue drain again.
    var doorbell: QueueDoorbell { QueueDoorbell(task.wake) }

    /// Kept requests the stop abandoned (GHT-ASY-04).
    var abandonedAtStop: Int { task.abandoned.load(ordering: .relaxed) }

    /// Stops serving the queue and waits, for the requests the device kept too (up to the drain
    /// timeout); returns where the queue stopped (``QueueState``).
    @discardableResult
    func stop() -> QueueState? {
        if !isStopped {
            isStopped = true
            thread.stop(task)
            if ownsThread { thread.join() }
        }
        return task.finalState.withLock { $0 }
    }

    deinit { stop() }
}
