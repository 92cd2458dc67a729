#if canImport(Glibc)
import Glibc
#endif

/// One of the kernel's clocks, read with `clock_gettime`: the one clock of the package.
///
/// The scheduler's turns and watchdog, the back-end's report rate limits, the IOVA space's
/// miss reports, the queue workers' CPU accounting, the workloads' durations and the
/// benchmarks' rates all read the time through this type, so that which clock a number comes
/// from is said once, here.
///
/// - ``monotonic`` (`CLOCK_MONOTONIC`): wall time that never jumps; for durations and
///   deadlines.
/// - ``threadCPUTime`` (`CLOCK_THREAD_CPUTIME_ID`): CPU time of the calling thread; for rates
///   per CPU-second on a shared machine.
public struct SystemClock: Sendable, Hashable {
    /// The `clockid_t` passed to `clock_gettime`.
    public let id: clockid_t

    /// `CLOCK_MONOTONIC`: seconds since an unspecified start, never set back.
    public static var monotonic: SystemClock { SystemClock(id: CLOCK_MONOTONIC) }

    /// `CLOCK_THREAD_CPUTIME_ID`: the CPU time the calling thread has used.
    public static var threadCPUTime: SystemClock { SystemClock(id: CLOCK_THREAD_CPUTIME_ID) }

    /// `CLOCK_REALTIME`: the wall clock, only for timestamps a person reads (log lines), never
    /// for intervals (it jumps when the time is set).
    public static var realtime: SystemClock { SystemClock(id: CLOCK_REALTIME) }

    init(id: clockid_t) { self.id = id }

    /// The clock's reading in nanoseconds.
    ///
    /// The corresponding C function is `clock_gettime`, which cannot fail for these clocks
    /// (both exist on every Linux this package runs on), so the reading is not optional.
    public var nanoseconds: UInt64 {
        var ts = timespec()
        clock_gettime(id, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }

    /// The reading in whole milliseconds (rounded down).
    public var milliseconds: UInt64 { nanoseconds / 1_000_000 }

    /// The reading in seconds.
    public var seconds: Double {
        var ts = timespec()
        clock_gettime(id, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }

    /// Sleeps the calling thread for at least `nanoseconds` (`nanosleep`, resumed after a
    /// signal for what is left).
    public static func sleep(nanoseconds: UInt64) {
        var request = timespec(tv_sec: Int(nanoseconds / 1_000_000_000), tv_nsec: Int(nanoseconds % 1_000_000_000))
        var remaining = timespec()
        while nanosleep(&request, &remaining) != 0 && errno == EINTR { request = remaining }
    }

    /// Sleeps the calling thread for at least `milliseconds`.
    public static func sleep(milliseconds: Int) {
        sleep(nanoseconds: UInt64(max(milliseconds, 0)) * 1_000_000)
    }
}
