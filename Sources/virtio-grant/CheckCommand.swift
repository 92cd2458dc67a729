import VirtioConformance
import VirtioSystem

/// `virtio-grant check`: the black-box conformance checker of a vhost-user back-end
/// (Spec/checker.md). Prints one line per case; with `--output-dir` writes `matrix.md` and
/// `results.jsonl` there. Exit status: 0 when no case failed, crashed or hung, 1 otherwise,
/// 2 for a usage error.
struct CheckCommand {
    let checker: BackEndChecker
    let filter: String?
    let outputDirectory: String?
    let name: String

    /// A reproducer file of `virtio-grant fuzz` to run again instead of the cases (`--replay`).
    let replay: FuzzReproducer?

    init(_ arguments: ArraySlice<String>) throws(UsageError) {
        let options = try Options(arguments, options: ["backend-cmd", "socket", "device", "output-dir", "timeout-per-case", "case", "name", "replay"])
        guard options.positional.isEmpty else { throw UsageError(description: "check takes no positional argument ('\(options.positional[0])')") }
        replay = try options.string("replay").map { path throws(UsageError) in try Self.reproducer(path) }
        let target = try Self.target(options, default: replay?.backendCommand)
        guard let device = CheckDevice(rawValue: options.string("device") ?? replay?.fuzzCase.seed.device.rawValue ?? "auto") else {
            throw UsageError(description: "--device is blk, net or auto")
        }
        let timeout = try options.int("timeout-per-case", default: 2000, in: 10...600_000)
        checker = BackEndChecker(target: target, device: device, timeoutPerCaseMilliseconds: timeout)
        filter = options.string("case")
        outputDirectory = options.string("output-dir")
        name = options.string("name") ?? options.string("backend-cmd") ?? options.string("socket") ?? "back-end"
        if let filter, BackEndChecker.cases(matching: filter).isEmpty {
            throw UsageError(description: "no case matches '\(filter)'")
        }
    }

    /// `--backend-cmd` or `--socket` (exactly one), else `fallback` (a reproducer's command).
    static func target(_ options: Options, default fallback: String? = nil) throws(UsageError) -> CheckTarget {
        switch (options.string("backend-cmd") ?? (options.string("socket") == nil ? fallback : nil), options.string("socket")) {
        case (let command?, nil):
            guard command.contains("{sock}") else { throw UsageError(description: "--backend-cmd must contain {sock}, where the socket path goes") }
            return .command(command)
        case (nil, let path?): return .socket(path)
        default: throw UsageError(description: "exactly one of --backend-cmd 'CMD {sock}' and --socket PATH is needed")
        }
    }

    static func reproducer(_ path: String) throws(UsageError) -> FuzzReproducer {
        let text: String
        do { text = try TextFile.read(path) } catch { throw UsageError(description: "cannot read \(path): \(error)") }
        switch FuzzReproducer.parse(text) {
        case .success(let r): return r
        case .failure(let e): throw UsageError(description: "\(path): \(e)")
        }
    }

    func run() -> Int32 {
        var stderr = StandardStream.error
        let cases = replay.map { [$0.fuzzCase.checkCase] } ?? BackEndChecker.cases(matching: filter)
        let results = checker.run(cases: cases) { r in
            print("\(r.outcome.rawValue.padding(5)) \(r.name) [\(r.requirements.joined(separator: ", "))] \(r.milliseconds) ms")
        }
        if let outputDirectory {
            do {
                try TextFile.write(results.markdownMatrix(implementation: name), to: outputDirectory + "/matrix.md")
                try TextFile.write(results.map(\.jsonLine).joined(separator: "\n") + "\n", to: outputDirectory + "/results.jsonl")
            } catch {
                print("virtio-grant check: cannot write to \(outputDirectory) (it must exist): \(error)", to: &stderr)
                return 1
            }
        }
        let bad = results.filter { [.fail, .crash, .hang].contains($0.outcome) }
        for r in bad { print("\n--- \(r.name): \(r.outcome.rawValue)\n\(r.evidence)", to: &stderr) }
        print("check: \(results.count) cases: " + CheckOutcome.allCases.map { o in "\(results.filter { $0.outcome == o }.count) \(o.rawValue)" }.joined(separator: ", "))
        if let replay, let expected = replay.expected {
            print("replay: \(results[0].outcome == expected ? "reproduced" : "NOT reproduced"): \(results[0].outcome.rawValue), saved as \(expected.rawValue)")
        }
        return bad.isEmpty ? 0 : 1
    }
}

/// `virtio-grant check-faulty-backend --socket PATH --fault F`: the checker's deliberately
/// faulty blk back-end (``FaultyBlockBackEnd``) in a process of its own, for the checker's tests.
enum CheckFaultyBackEndCommand {
    static func run(_ arguments: ArraySlice<String>) throws(UsageError) -> Int32 {
        let options = try Options(arguments, options: ["socket", "fault"])
        guard let path = options.string("socket") else { throw UsageError(description: "check-faulty-backend needs --socket PATH") }
        guard let fault = FaultyBlockBackEnd.Fault(rawValue: options.string("fault") ?? "none") else {
            throw UsageError(description: "--fault is one of \(FaultyBlockBackEnd.Fault.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        do {
            try FaultyBlockBackEnd(socketPath: path, fault: fault).serve()
        } catch {
            var stderr = StandardStream.error
            print("check-faulty-backend: \(error)", to: &stderr)
            return 1
        }
        return 0
    }
}

extension String {
    fileprivate func padding(_ width: Int) -> String { self + String(repeating: " ", count: max(0, width - count)) }
}
