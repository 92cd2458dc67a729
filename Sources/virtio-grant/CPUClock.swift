#if canImport(Glibc)
import Glibc
#endif

/// CPU time of the calling thread (CLOCK_THREAD_CPUTIME_ID): the machine is shared, so rates
/// are per CPU-second of the measuring thread, not per wall-clock second.
func threadCPUSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

/// Wall-clock seconds (CLOCK_MONOTONIC).
func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

/// The median of `values` (which must not be empty).
func median(_ values: [Double]) -> Double {
    let s = values.sorted()
    return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}

/// Runs `body` (which performs `opsPerCall` operations) until `seconds` of thread CPU time
/// pass, `runs` times; returns the median operations per CPU-second.
func medianRate(seconds: Double, runs: Int, opsPerCall: Int, _ body: () -> Void) -> Double {
    var rates: [Double] = []
    for _ in 0..<runs {
        var ops = 0
        let start = threadCPUSeconds()
        var elapsed = 0.0
        repeat {
            body()
            ops += opsPerCall
            elapsed = threadCPUSeconds() - start
        } while elapsed < seconds
        rates.append(Double(ops) / elapsed)
    }
    return median(rates)
}
