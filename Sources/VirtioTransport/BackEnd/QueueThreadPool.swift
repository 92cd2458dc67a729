import VirtioSystem

/// Threads that serve the queues of many sessions, each thread many queues (GHT-ASY-10): what
/// a back-end with hundreds of connections uses instead of a thread per queue. Give one pool to
/// ``BackEndConfiguration/queueThreads``; every session of that configuration hands its queues
/// to the pool's least loaded thread as they start, and takes them back when they stop.
public final class QueueThreadPool: @unchecked Sendable {
    private let threads: [QueueThread]

    /// Starts `count` threads, polling or sleeping as `execution` says; when `cpus` is not
    /// empty, thread k is pinned to CPU `cpus[k % cpus.count]` (one thread per core:
    /// `count` = the cores, `cpus` = their numbers).
    public init(threads count: Int, execution: QueueExecution = .sleeping, cpus: [Int] = []) throws(SystemError) {
        var threads: [QueueThread] = []
        for k in 0..<max(1, count) {
            let pin = cpus.isEmpty ? [] : [cpus[k % cpus.count]]
            threads.append(try QueueThread(name: "vqpool\(k)", cpus: pin, execution: execution, exitsWhenIdle: false) { name, body throws(SystemError) in
                try WorkerThread.start(name: name, body)
            })
        }
        self.threads = threads
    }

    /// The number of threads.
    public var threadCount: Int { threads.count }

    /// The queues each thread serves now.
    public var queueCounts: [Int] { threads.map(\.queueCount) }

    /// The thread serving the fewest queues.
    func leastLoaded() -> QueueThread { threads.min { $0.queueCount < $1.queueCount }! }

    deinit { for t in threads { t.shutDown() } }
}
