import VirtioSystem

/// The median of `values` (which must not be empty).
func median(_ values: [Double]) -> Double {
    let s = values.sorted()
    return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}

/// Runs `body` (which performs `opsPerCall` operations) until `seconds` of thread CPU time
/// pass, `runs` times; returns the median operations per CPU-second. The machine is shared,
/// so rates are per CPU-second of the measuring thread (``SystemClock/threadCPUTime``), not
/// per wall-clock second.
func medianRate(seconds: Double, runs: Int, opsPerCall: Int, _ body: () -> Void) -> Double {
    var rates: [Double] = []
    for _ in 0..<runs {
        var ops = 0
        let start = SystemClock.threadCPUTime.seconds
        var elapsed = 0.0
        repeat {
            body()
            ops += opsPerCall
            elapsed = SystemClock.threadCPUTime.seconds - start
        } while elapsed < seconds
        rates.append(Double(ops) / elapsed)
    }
    return median(rates)
}

/// A benchmark that could not run as asked (a reference binary that failed, for instance).
public struct BenchmarkError: Error, CustomStringConvertible {
    public var description: String
}
