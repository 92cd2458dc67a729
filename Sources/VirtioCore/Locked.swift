#if canImport(Glibc)
import Glibc
#endif
import Synchronization

#if VIRTIO_SANITIZER_LOCKS
/// The lock that guards the library's shared state (grant tables, mappers, sessions).
///
/// Built with `-DVIRTIO_SANITIZER_LOCKS` (the ThreadSanitizer pass of `.ci/run`), a POSIX
/// mutex: `pthread_mutex_lock` and `_unlock` are calls the sanitizer intercepts, so it sees the
/// happens-before edges they make, where the standard library's `Mutex` (atomics and futexes in
/// code the sanitizer does not instrument) looks like no synchronization at all and every
/// contended access reads as a race.
public typealias Locked<Value> = PosixLocked<Value>
#else
/// The lock that guards the library's shared state (grant tables, mappers, sessions): the
/// standard library's `Mutex` (inline atomics, a futex when contended). The sanitizer pass
/// swaps in ``PosixLocked`` (see `-DVIRTIO_SANITIZER_LOCKS`); a POSIX mutex in every build
/// would cost the grant mapper about 40% of its map+unmap rate.
public typealias Locked<Value> = Mutex<Value>
#endif

/// A value behind a POSIX mutex, with `Mutex`'s `withLock` shape.
public final class PosixLocked<Value>: @unchecked Sendable {
    @usableFromInline let mutex: UnsafeMutablePointer<pthread_mutex_t>
    @usableFromInline var value: Value

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
    @inlinable @inline(__always)
    public func withLock<Result, E: Error>(_ body: (inout Value) throws(E) -> Result) throws(E) -> Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }
}
