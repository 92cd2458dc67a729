import Synchronization
import VirtioCore
import VirtioSystem

/// A thread serving one or more started queues (GHT-ASY-10): it waits on every queue's kick,
/// wake doorbell and completion event in one epoll set, and serves the queues that have work.
/// Polling (``QueueExecution/polling(idleMicroseconds:)``), it spins over its queues with their
/// kicks suppressed while any has work, and sleeps once all were idle for the budget.
///
/// A thread per queue is this with one queue, ending when its queue stops; a
/// ``QueueThreadPool``'s threads serve the queues of every session given to them.
final class QueueThread: @unchecked Sendable {
    private struct Registry {
        var tasks: [UInt64: QueueTask] = [:]
        var added: [QueueTask] = []
        var nextID: UInt64 = 1
        var isShuttingDown = false
    }

    /// What the thread and the session's calls share.
    private final class Shared: @unchecked Sendable {
        let registry = Locked(Registry())
        /// Set when a queue was added or asked to stop: a polling round ends to look.
        let attention = Atomic<Bool>(false)
    }

    private let poller: Poller
    private let wake: Doorbell
    private let shared = Shared()
    private var thread: WorkerThread?

    private static let wakeToken = UInt64.max

    /// Starts a thread; `exitsWhenIdle`: it ends once its last queue stopped (a thread per queue).
    init(name: String, cpus: [Int], execution: QueueExecution, exitsWhenIdle: Bool,
         startThread: (String, @escaping @Sendable () -> Void) throws(SystemError) -> WorkerThread) throws(SystemError) {
        poller = try Poller()
        wake = try Doorbell()
        try poller.add(wake.fd, token: Self.wakeToken)
        let loop = Loop(poller: poller, wake: wake, shared: shared,
                        pollBudget: execution.pollBudgetNanoseconds, exitsWhenIdle: exitsWhenIdle)
        thread = try startThread(name) {
            if !cpus.isEmpty { try? WorkerThread.pinCurrentThread(to: cpus) }
            loop.run()
        }
    }

    /// The queues served now.
    var queueCount: Int { shared.registry.withLock { $0.tasks.count } }

    /// Starts serving `task`: its first drain comes at once.
    func add(_ task: QueueTask) throws(SystemError) {
        let id = shared.registry.withLock { r in
            defer { r.nextID += 1 }
            return r.nextID
        }
        task.threadToken = id
        try poller.add(task.kick.fd, token: id << 2)
        do {
            try poller.add(task.wake.fd, token: id << 2 | 2)
        } catch {
            try? poller.remove(task.kick.fd)
            throw error
        }
        shared.registry.withLock { r in
            r.tasks[id] = task
            r.added.append(task)
        }
        shared.attention.store(true, ordering: .releasing)
        try wake.signal()
    }

    /// Watches `task`'s completion event (GHT-ASY-07).
    func watchCompletions(of task: QueueTask, _ event: Doorbell) throws(SystemError) {
        task.completionEvent.withLock { $0 = event }
        try poller.add(event.fd, token: task.threadToken << 2 | 1)
    }

    /// Stops `task` and waits until the thread let it go (GHT-ASY-04).
    func stop(_ task: QueueTask) {
        task.stopping.store(true, ordering: .releasing)
        shared.attention.store(true, ordering: .releasing)
        try? task.wake.signal()
        while (try? task.done.wait(timeoutMilliseconds: 1000)) != true {
            if shared.registry.withLock({ $0.tasks[task.threadToken] == nil && $0.isShuttingDown }) { return }
        }
    }

    /// Ends the thread (once its queues are stopped) and waits for it.
    func shutDown() {
        shared.registry.withLock { $0.isShuttingDown = true }
        try? wake.signal()
        thread?.join()
        thread = nil
    }

    /// Waits for a thread that ends by itself (``init``'s `exitsWhenIdle`).
    func join() {
        thread?.join()
        thread = nil
    }

    /// The thread's loop and what it needs, apart from the queues it serves.
    private struct Loop: @unchecked Sendable {
        let poller: Poller
        let wake: Doorbell
        let shared: Shared
        let pollBudget: UInt64?
        let exitsWhenIdle: Bool

        func run() {
            var events: [PollEvent] = []
            events.reserveCapacity(16)
            var ready: [QueueTask] = []
            var lastCPU = SystemClock.threadCPUTime.nanoseconds
            while true {
                shared.attention.store(false, ordering: .relaxed)
                let (tasks, added, shuttingDown) = shared.registry.withLock { r in
                    defer { r.added.removeAll() }
                    return (Array(r.tasks.values), r.added, r.isShuttingDown)
                }
                // A new queue drains at once: chains made available before it started are
                // processed even if it is stopped at once.
                ready.append(contentsOf: added)
                var served: [QueueTask] = []
                for task in ready where !served.contains(where: { $0 === task }) {
                    _ = task.serve(polling: false)
                    served.append(task)
                }
                ready.removeAll(keepingCapacity: true)
                var waitingForStop = false
                let now = SystemClock.monotonic.nanoseconds
                for task in tasks where task.stopping.load(ordering: .acquiring) {
                    if task.stopMayComplete(now: now) {
                        release(task)
                    } else {
                        waitingForStop = true
                    }
                }
                let cpu = SystemClock.threadCPUTime.nanoseconds
                share(cpu &- lastCPU, among: served.isEmpty ? tasks : served)
                lastCPU = cpu
                let remaining = shared.registry.withLock { $0.tasks.count }
                if shuttingDown || (exitsWhenIdle && remaining == 0 && !tasks.isEmpty) { break }
                if let pollBudget, !waitingForStop {
                    poll(tasks.filter { !$0.stopping.load(ordering: .relaxed) }, budget: pollBudget)
                    let cpu = SystemClock.threadCPUTime.nanoseconds
                    share(cpu &- lastCPU, among: tasks)
                    lastCPU = cpu
                }
                _ = try? poller.wait(timeoutMilliseconds: waitingForStop ? 10 : -1, into: &events)
                let byToken = shared.registry.withLock { $0.tasks }
                for event in events {
                    if event.token == QueueThread.wakeToken {
                        _ = try? wake.drain()
                        continue
                    }
                    guard let task = byToken[event.token >> 2] else { continue }
                    switch event.token & 3 {
                    case 0:
                        let kicks = (try? task.kick.drain()) ?? 0
                        if kicks > 0 {
                            task.statistics.kicks.add(1, ordering: .relaxed)
                        } else if (event.isHangup || event.isError) && task.isKickWatched {
                            // Level-triggered: a hung-up descriptor is reported on every wait.
                            task.isKickWatched = false
                            try? poller.remove(task.kick.fd)
                            task.onKickLost()
                        }
                    case 1:
                        if let event = task.completionEvent.withLock({ $0 }) { _ = try? event.drain() }
                        task.serviceDevice()
                    default:
                        _ = try? task.wake.drain()
                    }
                    ready.append(task)
                }
            }
        }

        /// Spins over `tasks` with kicks suppressed until none had work for `budget`, or a queue
        /// was added or asked to stop; then a last sleeping drain of each enables its kick again
        /// and re-checks its ring (no lost kick, GHT-ASY-08).
        private func poll(_ tasks: [QueueTask], budget: UInt64) {
            guard !tasks.isEmpty else { return }
            var idleSince = SystemClock.monotonic.nanoseconds
            while !shared.attention.load(ordering: .acquiring) {
                var worked = false
                for task in tasks {
                    task.serviceDevice()
                    if task.serve(polling: true) { worked = true }
                }
                let now = SystemClock.monotonic.nanoseconds
                if worked {
                    idleSince = now
                } else if now &- idleSince > budget {
                    break
                }
            }
            for task in tasks { _ = task.serve(polling: false) }
        }

        /// Lets a stopped queue go: its descriptors leave the epoll set, its final state is set.
        private func release(_ task: QueueTask) {
            if task.isKickWatched { try? poller.remove(task.kick.fd) }
            try? poller.remove(task.wake.fd)
            if let event = task.completionEvent.withLock({ $0 }) { try? poller.remove(event.fd) }
            shared.registry.withLock { _ = $0.tasks.removeValue(forKey: task.threadToken) }
            task.finish()
        }

        private func share(_ nanoseconds: UInt64, among tasks: [QueueTask]) {
            guard !tasks.isEmpty else { return }
            let part = nanoseconds / UInt64(tasks.count)
            for task in tasks { task.statistics.cpuNanoseconds.add(part, ordering: .relaxed) }
        }
    }
}
