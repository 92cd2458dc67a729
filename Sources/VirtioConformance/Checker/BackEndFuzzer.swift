import VirtioSystem

/// A mutation fuzzer of a vhost-user back-end, built on ``BackEndChecker``: each run is a
/// ``FuzzCase`` (a seed request of the check cases and structured mutations of its
/// descriptors, indirect table, available ring, messages and memory) run as a check case, so
/// with a ``CheckTarget/command(_:)`` every run has a fresh process, bounded waits, the
/// evidence and the clean-up of the checker. Crashes, hangs, bad used ids and lengths and
/// writes into device-readable memory are findings; each is minimized, confirmed by a run
/// of its own and, with ``outputDirectory``, saved as a reproducer file (Spec/checker.md, GHT-CHK-16..20).
///
/// ```swift
/// let report = BackEndFuzzer(target: .command("my-backend --socket {sock}"), seed: 7).run(runs: 200)
/// #expect(report.findings.isEmpty)
/// ```
public struct BackEndFuzzer: Sendable {
    public var target: CheckTarget
    /// blk or net (the seeds are of that device type).
    public var device: CheckDevice
    public var seed: UInt64
    /// The bound on each wait of a run (``BackEndChecker/timeoutPerCaseMilliseconds``).
    public var timeoutPerRunMilliseconds = 1000
    /// The runs minimization may spend on one finding.
    public var minimizeRuns = 16
    /// Where reproducer files go (`finding-N-OUTCOME.repro`); nil: nowhere.
    public var outputDirectory: String?

    public init(target: CheckTarget, device: CheckDevice = .blk, seed: UInt64 = 1) {
        self.target = target
        self.device = device == .net ? .net : .blk
        self.seed = seed
    }

    /// What a fuzzing session did: runs, outcomes counted, and one finding per kind.
    public struct Report: Sendable {
        public var runs = 0
        public var outcomes: [CheckOutcome: Int] = [:]
        public var findings: [FuzzFinding] = []
        /// The reproducer files written.
        public var files: [String] = []
        /// Findings that did not reproduce once minimized (not kept).
        public var unconfirmed = 0
    }

    /// Runs at most `runs` cases, and stops after `seconds` when given. The seeds run
    /// unmutated first; then the cases come from a generator seeded with ``seed``, so the
    /// same seed gives the same cases. Findings of a kind already found are counted, not kept.
    public func run(runs: Int, seconds: Double? = nil, progress: (Int, CheckResult) -> Void = { _, _ in }) -> Report {
        let start = SystemClock.monotonic.milliseconds
        var generator = Generator(self)
        var report = Report()
        var kinds: Set<String> = []
        while report.runs < runs {
            if let seconds, Double(SystemClock.monotonic.milliseconds - start) >= seconds * 1000 { break }
            let fuzzCase = generator.next()
            let result = execute(fuzzCase)
            report.runs += 1
            report.outcomes[result.outcome, default: 0] += 1
            progress(report.runs, result)
            guard let kind = Self.kind(of: result), !kinds.contains(kind) else { continue }
            var finding = minimize(fuzzCase, result, kind: kind)
            // A finding counts once it reproduces: a hang of a loaded machine often does not.
            let again = execute(finding.fuzzCase)
            guard Self.kind(of: again) == kind else {
                report.unconfirmed += 1
                continue
            }
            kinds.insert(kind)
            finding.backendCommand = { if case .command(let c) = target { c } else { nil } }()
            if let outputDirectory {
                let path = outputDirectory + "/finding-\(report.findings.count + 1)-\(finding.result.outcome.rawValue).repro"
                if (try? TextFile.write(finding.reproducer, to: path)) != nil { report.files.append(path) }
            }
            report.findings.append(finding)
        }
        return report
    }

    /// The first `count` cases of a session, in order: the seeds unmutated, then one to four
    /// mutations of a seed each, from a generator seeded with ``seed`` (GHT-CHK-16).
    public func cases(_ count: Int) -> [FuzzCase] {
        var generator = Generator(self)
        return (0..<count).map { _ in generator.next() }
    }

    struct Generator {
        var mutator: FuzzMutator
        var corpus: ArraySlice<FuzzCase>
        let device: CheckDevice

        init(_ fuzzer: BackEndFuzzer) {
            mutator = FuzzMutator(random: SplitMix64(seed: fuzzer.seed), queueSize: 32, memorySize: CheckConnection.memoryPages * 4096)
            corpus = FuzzCase.Seed.seeds(for: fuzzer.device).map { FuzzCase(seed: $0) }[...]
            device = fuzzer.device
        }

        mutating func next() -> FuzzCase { corpus.popFirst() ?? mutator.next(device: device) }
    }

    /// Runs one case once (a replay of a reproducer file, GHT-CHK-19).
    public func execute(_ fuzzCase: FuzzCase) -> CheckResult {
        BackEndChecker(target: target, device: fuzzCase.seed.device, timeoutPerCaseMilliseconds: timeoutPerRunMilliseconds)
            .run(cases: [fuzzCase.checkCase])[0]
    }

    /// What kind of finding a result is: its outcome, and for a fail the rule it names first
    /// (`fail USD-DEF-02`), for a crash how the process ended; nil for a pass or n/a.
    public static func kind(of result: CheckResult) -> String? {
        switch result.outcome {
        case .pass, .notApplicable: return nil
        case .hang: return "hang"
        case .crash: return "crash " + (result.evidence.split(separator: "\n").first.map(String.init) ?? "")
        case .fail: return "fail " + (result.evidence.split(separator: ":").first.map(String.init) ?? "")
        }
    }

    /// Runs `fuzzCase`; when it gives a finding, minimizes it (a hand-written case, or a
    /// reproducer to shorten). Nil when it passes.
    public func reduce(_ fuzzCase: FuzzCase) -> FuzzFinding? {
        let result = execute(fuzzCase)
        return Self.kind(of: result).map { minimize(fuzzCase, result, kind: $0) }
    }

    /// Drops mutations one at a time, last first, keeping each drop after which the case still
    /// gives a finding of the same kind; at most ``minimizeRuns`` runs.
    func minimize(_ fuzzCase: FuzzCase, _ result: CheckResult, kind: String) -> FuzzFinding {
        var best = FuzzFinding(fuzzCase: fuzzCase, result: result, originalMutations: fuzzCase.mutations)
        var spent = 0
        var i = fuzzCase.mutations.count - 1
        while i >= 0 && spent < minimizeRuns {
            var candidate = best.fuzzCase
            candidate.mutations.remove(at: i)
            let r = execute(candidate)
            spent += 1
            if Self.kind(of: r) == kind {
                best.fuzzCase = candidate
                best.result = r
            }
            i -= 1
        }
        return best
    }
}
