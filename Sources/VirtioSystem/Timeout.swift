/// A timeout in milliseconds that survives being restarted: a wait interrupted by a signal
/// and retried by the syscall seam asks ``remainingMilliseconds()`` again and waits only for
/// what is left, instead of starting over.
package struct Timeout {
    private let deadline: ContinuousClock.Instant?

    /// `milliseconds < 0` waits forever, 0 polls, a positive value is a deadline from now.
    package init(milliseconds: Int32) {
        deadline = milliseconds < 0 ? nil : .now.advanced(by: .milliseconds(milliseconds))
    }

    /// A deadline at `instant` (a bound that counts from an earlier event, such as a
    /// connection's arrival).
    package init(deadline instant: ContinuousClock.Instant) {
        deadline = instant
    }

    /// The milliseconds left, rounded up (a wait never ends early), or -1 for no deadline.
    package func remainingMilliseconds() -> Int32 {
        guard let deadline else { return -1 }
        let left = ContinuousClock.now.duration(to: deadline).components
        if left.seconds < 0 || (left.seconds == 0 && left.attoseconds <= 0) { return 0 }
        let milliseconds = left.seconds * 1000 + (left.attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000
        return Int32(clamping: milliseconds)
    }
}
