#if canImport(Glibc)
import Glibc
#endif

/// A value behind a POSIX mutex.
///
/// The library's shared state (grant tables, mappers, sessions) is guarded by this lock
/// rather than the standard library's `Mutex`: `pthread_mutex_lock` and `_unlock` are calls
/// ThreadSanitizer intercepts, so the sanitizer pass sees the happens-before edges they make,
/// where the standard library's lock (atomics and futexes in code the sanitizer does not
/// instrument) looks like no synchronization at all. Uncontended, both cost one atomic
/// exchange each way.
public final class Locked<Value>: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private var value: Value

    public init(_ value: Value) {
        self.value = value
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        let result = pthread_mutex_init(mutex, nil)
        precondition(result == 0, "pthread_mutex_init failed: \(result)")
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    /// Runs `body` with the value, holding the lock.
    @inline(__always)
    public func withLock<Result, E: Error>(_ body: (inout Value) throws(E) -> Result) throws(E) -> Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }
}
