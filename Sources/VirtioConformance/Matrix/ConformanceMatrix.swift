/// The conformance matrix: every requirement of `Spec/` with the tests that name it and, given
/// a test run, their result.
///
/// Its ``problems`` are what makes the suite fail: a MUST with neither a test nor an
/// exemption, a SHOULD with neither a test nor an explanation, a test naming an ID that
/// `Spec/` does not state, a defect of the documents, and (with a run) a failed or missing test.
public struct ConformanceMatrix: Sendable {
    /// One row of the matrix.
    public struct Entry: Sendable {
        public var requirement: Requirement
        public var tests: [TestReference]
        public var exemption: Exemption?
        public var status: Status
    }

    /// Where a requirement stands.
    public enum Status: String, Sendable, CaseIterable {
        /// Every test that names it passed in the run.
        case passed = "pass"
        /// At least one test that names it failed.
        case failed = "FAIL"
        /// It has tests, but the run did not report all of them passed (or there was no run).
        case notRun = "not run"
        /// Not claimed, for the reason its exemption gives.
        case exempt = "n/a"
        /// No test names it (allowed for MAY and DEF rows only).
        case untested = "untested"
    }

    public private(set) var entries: [Entry] = []
    public private(set) var problems: [String] = []
    /// Whether a test run's output was joined in.
    public let hasRun: Bool

    public init(catalog: RequirementCatalog, tests: TestIndex, run: TestRunLog? = nil) {
        hasRun = run != nil
        problems = catalog.problems
        for requirement in catalog.requirements {
            let named = tests.tests(naming: requirement.id)
            let exemption = catalog.exemption(for: requirement.id)
            let status = Self.status(of: named, exemption: exemption, run: run)
            entries.append(Entry(requirement: requirement, tests: named, exemption: exemption, status: status))
            switch (status, requirement.strength) {
            case (.untested, .must):
                problems.append("\(requirement.id) (\(requirement.level), \(requirement.document)): a MUST that no test names and no exemption explains")
            case (.untested, .should):
                problems.append("\(requirement.id) (\(requirement.level), \(requirement.document)): a SHOULD neither tested nor explained in not-applicable.md")
            case (.failed, _):
                let failing = named.filter { run?.outcome(of: $0.title) == .failed }.map(\.title)
                problems.append("\(requirement.id): failed: \(failing.joined(separator: "; "))")
            case (.notRun, _) where run != nil:
                let missing = named.filter { run?.outcome(of: $0.title) != .passed }.map(\.title)
                problems.append("\(requirement.id): the run did not report these tests passed: \(missing.joined(separator: "; "))")
            default:
                break
            }
        }
        for id in tests.namedIDs.sorted() where catalog[id] == nil {
            let titles = tests.tests(naming: id).map { "\($0.file):\($0.line)" }
            problems.append("\(id): named by tests (\(titles.joined(separator: ", "))) but stated nowhere in Spec/")
        }
        if let run, !run.isComplete {
            problems.append("the test output has no closing 'Test run with N tests' line: the run did not finish")
        }
    }

    private static func status(of tests: [TestReference], exemption: Exemption?, run: TestRunLog?) -> Status {
        guard !tests.isEmpty else { return exemption == nil ? .untested : .exempt }
        guard let run else { return .notRun }
        let outcomes = tests.map { run.outcome(of: $0.title) }
        if outcomes.contains(.failed) { return .failed }
        return outcomes.allSatisfy { $0 == .passed } ? .passed : .notRun
    }

    /// The number of entries at `strength` with `status`.
    public func count(strength: Strength? = nil, status: Status? = nil) -> Int {
        entries.filter { (strength == nil || $0.requirement.strength == strength) && (status == nil || $0.status == status) }.count
    }
}
