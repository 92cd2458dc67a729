import VirtioCore
/// How one case of ``BackEndChecker`` ended (Spec/checker.md, GHT-CHK-02).
public enum CheckOutcome: String, Sendable, Hashable, CaseIterable {
    /// The back-end did what the rules say (for hostile input: a defined outcome, a broken queue
    /// or a closed connection, and it still answers or has hung up).
    case pass
    /// The back-end answered, against a rule; the evidence says what was sent and what came back.
    case fail
    /// The back-end process died during the case (exit status or signal).
    case crash
    /// No answer within the case's time bound.
    case hang
    /// The case needs a feature or device type the back-end did not offer.
    case notApplicable = "n/a"
}

/// The result of one case: its name, the requirement IDs of Spec/ it checks, the outcome, and
/// for anything but a pass the evidence a maintainer can act on (GHT-CHK-03).
public struct CheckResult: Sendable, Hashable {
    public var name: String
    public var requirements: [String]
    public var outcome: CheckOutcome
    /// What was sent, what came back, and the rule's text; empty for a plain pass.
    public var evidence: String
    public var milliseconds: Int

    public init(name: String, requirements: [String], outcome: CheckOutcome, evidence: String, milliseconds: Int) {
        self.name = name
        self.requirements = requirements
        self.outcome = outcome
        self.evidence = evidence
        self.milliseconds = milliseconds
    }

    /// One JSON object on one line: `{"case":…,"requirements":[…],"outcome":…,"ms":…,"evidence":…}`.
    public var jsonLine: String {
        let ids = requirements.map { JSONLine.quoted($0) }.joined(separator: ",")
        return "{\"case\":\(JSONLine.quoted(name)),\"requirements\":[\(ids)],\"outcome\":\(JSONLine.quoted(outcome.rawValue)),"
            + "\"ms\":\(milliseconds),\"evidence\":\(JSONLine.quoted(evidence))}"
    }
}

extension Array where Element == CheckResult {
    /// The conformance matrix of one implementation as Markdown: a count per outcome, one row
    /// per case, then the evidence of every case that did not pass.
    public func markdownMatrix(implementation: String) -> String {
        var lines = ["# Conformance of \(implementation)", ""]
        let counts = CheckOutcome.allCases.map { outcome in "\(outcome.rawValue) \(filter { $0.outcome == outcome }.count)" }
        lines.append(counts.joined(separator: " · "))
        lines += ["", "| case | requirements | outcome | ms |", "|---|---|---|---|"]
        for r in self {
            lines.append("| \(r.name) | \(r.requirements.joined(separator: ", ")) | \(r.outcome.rawValue) | \(r.milliseconds) |")
        }
        let noted = filter { $0.outcome != .pass && !$0.evidence.isEmpty }
        if !noted.isEmpty {
            lines += ["", "## Evidence"]
            for r in noted {
                lines += ["", "### \(r.name) (\(r.outcome.rawValue))", "", "```", r.evidence, "```"]
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }
}
