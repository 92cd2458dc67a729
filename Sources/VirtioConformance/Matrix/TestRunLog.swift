/// What one test did in a run.
public enum TestOutcome: String, Hashable, Sendable, Comparable {
    case passed
    case skipped
    case failed

    private var rank: Int {
        switch self {
        case .passed: 0
        case .skipped: 1
        case .failed: 2
        }
    }

    public static func < (a: TestOutcome, b: TestOutcome) -> Bool { a.rank < b.rank }
}

/// The outcomes of a `swift test` run, read from its console output (Swift Testing's result
/// lines: `✔ Test "<display name>" passed after …`, `✘ Test "…" failed after …`,
/// `➜ Test "…" skipped`, parameterized tests with `with N test cases` before the verb).
///
/// Two tests with one display name share an entry; a failure of either wins.
public struct TestRunLog: Sendable {
    public private(set) var outcomes: [String: TestOutcome] = [:]
    /// Whether the output held Swift Testing's closing line (`Test run with N tests …`): output
    /// cut short is not a run.
    public private(set) var isComplete = false

    public init() {}

    public init(output: String) {
        for line in output.split(separator: "\n") {
            add(line: Self.withoutTerminalEscapes(line))
        }
    }

    /// The outcome of the test titled `title`, or `nil` if the run did not report it.
    public func outcome(of title: String) -> TestOutcome? { outcomes[title] }

    private mutating func add(line: String) {
        if line.contains("Test run with "), line.contains(" passed after ") || line.contains(" failed after ") {
            isComplete = true
            return
        }
        guard let open = line.firstRange(of: "Test \"") else { return }
        let outcome: TestOutcome
        let verb: Range<String.Index>
        if let found = line.ranges(of: " passed after ").last {
            (outcome, verb) = (.passed, found)
        } else if let found = line.ranges(of: " failed after ").last {
            (outcome, verb) = (.failed, found)
        } else if let found = line.ranges(of: " skipped").last {
            (outcome, verb) = (.skipped, found)
        } else {
            return
        }
        guard verb.lowerBound > open.upperBound,
              let close = line[open.upperBound..<verb.lowerBound].lastIndex(of: "\"") else { return }
        let title = String(line[open.upperBound..<close])
        outcomes[title] = max(outcomes[title] ?? outcome, outcome)
    }

    /// The line without ANSI colour sequences (a run on a terminal prints them).
    static func withoutTerminalEscapes(_ line: Substring) -> String {
        guard line.contains("\u{1B}") else { return String(line) }
        var result = ""
        var inEscape = false
        for c in line {
            if inEscape {
                if c.isLetter { inEscape = false }
            } else if c == "\u{1B}" {
                inEscape = true
            } else {
                result.append(c)
            }
        }
        return result
    }
}
