import VirtioSystem

/// The process's peak resident memory (Linux `VmHWM`), for tests that show an operation
/// allocates nothing in proportion to what a peer declares (`Spec/limits.md`): the peak is
/// reset to the current resident set, the operation runs, and the growth of the peak is what
/// it touched at most. Tests running at the same time add to it, so bounds are checked with a
/// wide margin.
public enum PeakMemory {
    /// The bytes by which the peak resident set grew above the resident set while `body` ran.
    public static func growth(during body: () throws -> Void) throws -> Int {
        try TextFile.write("5", to: "/proc/self/clear_refs")   // resets VmHWM to VmRSS (Linux 4.0)
        let before = try kilobytes("VmRSS")
        try body()
        return max(0, try kilobytes("VmHWM") - before) * 1024
    }

    /// A `kB` field of /proc/self/status.
    static func kilobytes(_ field: String) throws -> Int {
        let status = try TextFile.read("/proc/self/status")
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix(field + ":") }),
              let value = Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") else {
            throw PeakMemoryUnavailable(field: field)
        }
        return value
    }

    /// /proc/self/status has no such field.
    public struct PeakMemoryUnavailable: Error { public let field: String }
}
