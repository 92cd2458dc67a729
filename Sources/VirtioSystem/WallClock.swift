#if canImport(Glibc)
import Glibc
#endif

/// A wall-clock instant, for timestamps in logs (not for measuring: use `ContinuousClock`).
public struct WallClockTime: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// Seconds since the Unix epoch, UTC.
    public var seconds: Int
    /// Nanoseconds within the second.
    public var nanoseconds: Int

    public init(seconds: Int, nanoseconds: Int) {
        self.seconds = seconds
        self.nanoseconds = nanoseconds
    }

    /// Now (``SystemClock/realtime``).
    public static func now() -> WallClockTime {
        let now = SystemClock.realtime.nanoseconds
        return WallClockTime(seconds: Int(now / 1_000_000_000), nanoseconds: Int(now % 1_000_000_000))
    }

    public static func < (a: WallClockTime, b: WallClockTime) -> Bool {
        (a.seconds, a.nanoseconds) < (b.seconds, b.nanoseconds)
    }

    /// ISO 8601 in UTC with milliseconds: `2026-12-07T17:09:25.123Z`.
    public var description: String {
        var t = time_t(seconds)
        var parts = tm()
        gmtime_r(&t, &parts)
        func two(_ n: Int32) -> String { n < 10 ? "0\(n)" : "\(n)" }
        let ms = nanoseconds / 1_000_000
        let millis = ms < 10 ? "00\(ms)" : ms < 100 ? "0\(ms)" : "\(ms)"
        return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))T"
            + "\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)).\(millis)Z"
    }
}
