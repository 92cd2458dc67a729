import VirtioConformance
import VirtioSystem

/// `virtio-grant fuzz`: the mutation fuzzer of a vhost-user back-end (``BackEndFuzzer``,
/// Spec/checker.md GHT-CHK-16..20). Prints a line per finding and a summary; with
/// `--output-dir` saves a reproducer file per finding for `check --replay`. Exit status: 0
/// when nothing was found, 1 when something was, 2 for a usage error.
struct FuzzCommand {
    let fuzzer: BackEndFuzzer
    let runs: Int
    let seconds: Double?

    init(_ arguments: ArraySlice<String>) throws(UsageError) {
        let options = try Options(arguments, options: ["backend-cmd", "socket", "device", "output-dir", "timeout-per-case", "runs", "seconds", "seed"])
        guard options.positional.isEmpty else { throw UsageError(description: "fuzz takes no positional argument ('\(options.positional[0])')") }
        let target = try CheckCommand.target(options)
        guard let device = CheckDevice(rawValue: options.string("device") ?? "blk"), device != .auto else {
            throw UsageError(description: "--device is blk or net")
        }
        var fuzzer = BackEndFuzzer(target: target, device: device, seed: UInt64(try options.int("seed", default: 1, in: 0...Int.max)))
        fuzzer.timeoutPerRunMilliseconds = try options.int("timeout-per-case", default: 1000, in: 10...600_000)
        fuzzer.outputDirectory = options.string("output-dir")
        self.fuzzer = fuzzer
        runs = try options.int("runs", default: 100, in: 1...10_000_000)
        seconds = try options.string("seconds").map { _ throws(UsageError) in Double(try options.int("seconds", default: 0, in: 1...86_400)) }
    }

    func run() -> Int32 {
        var stderr = StandardStream.error
        let report = fuzzer.run(runs: runs, seconds: seconds) { n, r in
            if r.outcome != .pass && r.outcome != .notApplicable { print("run \(n): \(r.outcome.rawValue)") }
        }
        for (i, f) in report.findings.enumerated() {
            print("\n--- finding \(i + 1): \(BackEndFuzzer.kind(of: f.result) ?? "?") (\(f.originalMutations.count) mutations, \(f.fuzzCase.mutations.count) after minimizing)", to: &stderr)
            print(f.reproducer, to: &stderr)
        }
        for path in report.files { print("reproducer: \(path)") }
        let counts = CheckOutcome.allCases.map { "\(report.outcomes[$0, default: 0]) \($0.rawValue)" }.joined(separator: ", ")
        print("fuzz: \(report.runs) runs (seed \(fuzzer.seed)): \(counts); \(report.findings.count) finding(s), \(report.unconfirmed) not reproduced")
        return report.findings.isEmpty ? 0 : 1
    }
}
