import VirtioSystem

/// A black-box conformance checker of a vhost-user back-end: it plays the front-end from this
/// process with its own memory, runs each ``CheckCase`` on a fresh connection (and, for a
/// ``CheckTarget/command(_:)``, a fresh process), bounds each in time, watches the process, and
/// cleans everything up (Spec/checker.md, GHT-CHK-01..06).
///
/// ```swift
/// let results = BackEndChecker(target: .socket(path), device: .blk).run()
/// #expect(results.allSatisfy { $0.outcome == .pass || $0.outcome == .notApplicable })
/// ```
public struct BackEndChecker: Sendable {
    public var target: CheckTarget
    public var device: CheckDevice
    /// The bound on each wait of a case (an answer, a used element); the whole case is bounded
    /// by a small multiple of it.
    public var timeoutPerCaseMilliseconds: Int
    /// How long a started back-end may take to listen.
    public var startTimeoutMilliseconds = 10_000

    public init(target: CheckTarget, device: CheckDevice = .auto, timeoutPerCaseMilliseconds: Int = 2000) {
        self.target = target
        self.device = device
        self.timeoutPerCaseMilliseconds = timeoutPerCaseMilliseconds
    }

    /// The cases whose name contains `filter`, or any of its comma-separated parts (all when nil).
    public static func cases(matching filter: String?) -> [CheckCase] {
        guard let filter else { return CheckCase.all }
        let parts = filter.split(separator: ",").map(String.init)
        return CheckCase.all.filter { c in parts.contains { c.name.contains($0) } }
    }

    /// Runs `cases` one after the other and returns one result per case.
    public func run(cases: [CheckCase] = CheckCase.all, progress: (CheckResult) -> Void = { _ in }) -> [CheckResult] {
        var resolved = device
        var results: [CheckResult] = []
        for c in cases {
            let result = run(c, device: &resolved)
            progress(result)
            results.append(result)
        }
        return results
    }

    private func run(_ c: CheckCase, device: inout CheckDevice) -> CheckResult {
        let start = SystemClock.monotonic.milliseconds
        func result(_ outcome: CheckOutcome, _ evidence: String) -> CheckResult {
            CheckResult(name: c.name, requirements: c.requirements, outcome: outcome, evidence: evidence,
                        milliseconds: Int(SystemClock.monotonic.milliseconds - start))
        }
        var process: CheckedProcess?
        let socketPath: String
        switch target {
        case .socket(let path): socketPath = path
        case .command(let command):
            do {
                process = try CheckedProcess(command: command, timeoutMilliseconds: startTimeoutMilliseconds)
            } catch {
                return result(.fail, "\(error)")
            }
            socketPath = process!.socketPath
        }
        defer { process?.end() }
        let context = CheckContext(socketPath: socketPath, timeoutMilliseconds: Int32(timeoutPerCaseMilliseconds))
        defer { context.closeAll() }
        if device == .auto {
            device = Self.probeDevice(context)
        }
        if let wanted = c.device, wanted != device {
            return result(.notApplicable, "a \(wanted.rawValue) case; the back-end is \(device.rawValue)")
        }
        var outcome = CheckOutcome.pass
        var evidence = ""
        do {
            try c.body(context)
        } catch {
            switch error {
            case .notApplicable(let why): outcome = .notApplicable; evidence = why
            case .hang(let what): outcome = .hang; evidence = "no answer: \(what)\n\(context.evidence)"
            case .violation(let text): outcome = .fail; evidence = text
            case .closed(let what): outcome = .fail; evidence = "the back-end closed the connection awaiting \(what)\n\(context.evidence)"
            case .setup(let what): outcome = .fail; evidence = what
            }
            if outcome != .pass && outcome != .notApplicable { evidence += "\nrule (\(c.requirements.joined(separator: ", "))): \(c.rule)" }
        }
        // A process that died during the case crashed, whatever the case saw (GHT-CHK-02). A
        // closed connection or a failure gives a dying process (a core dump, a backtracer) a
        // moment to end: its descriptors close only as it exits.
        let suspicious = context.sawClose || (outcome != .pass && outcome != .notApplicable)
        if let process, let status = process.waitForExit(milliseconds: suspicious ? 500 : 0) {
            return result(.crash, "the back-end process ended: \(status)\n\(context.evidence)\n--- its output:\n\(process.outputText)")
        }
        return result(outcome, evidence)
    }

    /// The device type from the offered features (``CheckDevice/auto``); blk when it cannot tell.
    static func probeDevice(_ context: CheckContext) -> CheckDevice {
        guard let c = try? context.connect() else { return .blk }
        defer { c.close() }
        guard (try? c.handshake()) != nil else { return .blk }
        return c.offered.rawValue & (0b111 << 15) != 0 ? .net : .blk
    }
}
