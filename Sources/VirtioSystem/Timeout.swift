/// A timeout in milliseconds that survives being restarted: a wait interrupted by a signal
/// and retried by the syscall seam asks ``remainingMilliseconds()`` again and waits only for
/// what is left, instead of starting over.
package struct Timeout {
    /// The deadline as a ``SystemClock/monotonic`` reading in nanoseconds; nil: none.
    private let deadline: UInt64?

    /// `milliseconds < 0` waits forever, 0 polls, a positive value is a deadline from now.
    package init(milliseconds: Int32) {
        deadline = milliseconds < 0 ? nil : SystemClock.monotonic.nanoseconds &+ UInt64(milliseconds) * 1_000_000
    }

    /// A deadline `milliseconds` after `start`, a ``SystemClock/monotonic`` reading in
    /// nanoseconds (a bound that counts from an earlier event, such as a connection's arrival);
    /// a negative value is a deadline already past.
    package init(milliseconds: Int32, after start: UInt64) {
        deadline = start &+ UInt64(max(milliseconds, 0)) * 1_000_000
    }

    /// The milliseconds left, rounded up (a wait never ends early), or -1 for no deadline.
    package func remainingMilliseconds() -> Int32 {
        guard let deadline else { return -1 }
        let now = SystemClock.monotonic.nanoseconds
        guard now < deadline else { return 0 }
        return Int32(clamping: (deadline - now + 999_999) / 1_000_000)
    }
}
