#if canImport(Glibc)
import Glibc
#endif
import CVirtioShim

/// A joinable POSIX thread running one closure (the transport's queue workers and session
/// threads; Swift concurrency's cooperative pool is the wrong place for threads that block in
/// `epoll_wait`).
public final class WorkerThread: @unchecked Sendable {
    private var thread = pthread_t()
    private var joined = false
    private let body: @Sendable () -> Void

    /// Starts a thread running `body`, trapping if the system cannot create one. For tools and
    /// tests only: a thread started on a peer's behalf uses ``start(name:_:)``, whose failure
    /// refuses that peer instead of ending the process (GHT-LIM-41).
    public convenience init(name: String = "virtio", _ body: @escaping @Sendable () -> Void) {
        do {
            try self.init(starting: body)
        } catch {
            preconditionFailure("pthread_create failed: \(error)")
        }
    }

    /// Starts a thread running `body`. The corresponding C call is `pthread_create`.
    ///
    /// - Throws: `SystemError` (`EAGAIN`: the thread limit or memory is exhausted) when no thread
    ///   could be created; `body` is then never run.
    public static func start(name: String = "virtio", _ body: @escaping @Sendable () -> Void) throws(SystemError) -> WorkerThread {
        try WorkerThread(starting: body)
    }

    private init(starting body: @escaping @Sendable () -> Void) throws(SystemError) {
        self.body = body
        let unmanaged = Unmanaged.passRetained(self)
        let result = pthread_create(&thread, nil, { raw in
            let me = Unmanaged<WorkerThread>.fromOpaque(raw!).takeRetainedValue()
            me.body()
            return nil
        }, unmanaged.toOpaque())
        if result != 0 {
            unmanaged.release()
            joined = true   // nothing to join or detach
            throw SystemError(errno: result, operation: "pthread_create")
        }
    }

    /// Binds the calling thread to the CPUs in `cpus` (numbers from 0; at least one must exist).
    /// The corresponding C call is `sched_setaffinity`.
    public static func pinCurrentThread(to cpus: [Int]) throws(SystemError) {
        var mask = [UInt8](repeating: 0, count: 128)
        for cpu in cpus where cpu >= 0 && cpu < mask.count * 8 { mask[cpu / 8] |= UInt8(1 << (cpu % 8)) }
        try nothingOrErrno("sched_setaffinity") { CVirtioShim_set_thread_affinity(mask, mask.count) }
    }

    /// The CPUs the calling thread may run on. The corresponding C call is `sched_getaffinity`.
    public static func currentThreadCPUs() throws(SystemError) -> [Int] {
        var mask = [UInt8](repeating: 0, count: 128)
        try nothingOrErrno("sched_getaffinity") { CVirtioShim_get_thread_affinity(&mask, mask.count) }
        return (0..<(mask.count * 8)).filter { mask[$0 / 8] & UInt8(1 << ($0 % 8)) != 0 }
    }

    /// Waits for the thread to finish (idempotent). The corresponding C call is `pthread_join`.
    public func join() {
        guard !joined else { return }
        joined = true
        pthread_join(thread, nil)
    }

    // A thread nobody joins is detached when the last reference goes (the thread itself holds
    // one until its body returns), so its resources are freed when it ends.
    deinit {
        if !joined { pthread_detach(thread) }
    }
}
