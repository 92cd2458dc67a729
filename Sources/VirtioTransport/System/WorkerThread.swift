#if canImport(Glibc)
import Glibc
#endif

/// A joinable POSIX thread running one closure (the transport's queue workers and session
/// threads; Swift concurrency's cooperative pool is the wrong place for threads that block in
/// `epoll_wait`).
public final class WorkerThread: @unchecked Sendable {
    private var thread = pthread_t()
    private var joined = false
    private let body: @Sendable () -> Void

    /// Starts a thread running `body`. The corresponding C call is `pthread_create`.
    public init(name: String = "virtio", _ body: @escaping @Sendable () -> Void) {
        self.body = body
        let unmanaged = Unmanaged.passRetained(self)
        let result = pthread_create(&thread, nil, { raw in
            let me = Unmanaged<WorkerThread>.fromOpaque(raw!).takeRetainedValue()
            me.body()
            return nil
        }, unmanaged.toOpaque())
        precondition(result == 0, "pthread_create failed: \(result)")
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
