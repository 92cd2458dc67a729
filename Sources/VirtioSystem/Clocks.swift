#if canImport(Glibc)
import Glibc
#endif

// The clocks the rest of the package reads: one place calls clock_gettime and nanosleep.

/// CPU time of the calling thread (`CLOCK_THREAD_CPUTIME_ID`), in nanoseconds: what benchmarks
/// divide by, because this machine is shared and wall time measures the neighbours too.
public func threadCPUNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}

/// `CLOCK_MONOTONIC` in nanoseconds: the scheduler's slices and decision costs.
public func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}

/// `CLOCK_MONOTONIC` in milliseconds: deadlines and timeouts, never wall time.
public func monotonicMilliseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1000 + UInt64(ts.tv_nsec) / 1_000_000
}

/// Sleeps at least `ms` milliseconds, resuming after a signal (EINTR) for the time left.
public func sleepMilliseconds(_ ms: Int) { sleepMicroseconds(ms * 1000) }

/// Sleeps at least `us` microseconds, resuming after a signal (EINTR) for the time left.
public func sleepMicroseconds(_ us: Int) {
    var request = timespec(tv_sec: us / 1_000_000, tv_nsec: (us % 1_000_000) * 1000)
    var remaining = timespec()
    while nanosleep(&request, &remaining) != 0 && errno == EINTR { request = remaining }
}
