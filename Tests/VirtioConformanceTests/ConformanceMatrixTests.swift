import Testing
import VirtioConformance

/// A small `Spec/` and test tree, to check the generator against known answers.
private enum Fixture {
    static let rules = """
        # Ours

        | Area | Party |
        |---|---|
        | GHT-AAA | Back-end |

        ## 2. Things

        | ID | Level | Rule |
        |---|---|---|
        | GHT-AAA-01 | MUST | A must with a test. |
        | GHT-AAA-02 | MUST NOT | A must without one. |
        | GHT-AAA-03 | SHOULD | A should without one. |
        | GHT-AAA-04 | MAY | A may without one. |
        | GHT-AAA-05 | SHOULD / MUST | The strongest keyword counts. |

        | Field | Meaning |
        |---|---|
        | flags | not a requirement table |
        """
    static let virtio = """
        ## 3. Split virtqueues

        | ID | § | Party | Level | Rule |
        |---|---|---|---|---|
        | SPL-DEV-01 | 2.7.5.1 | Dev | MUST NOT | The device never writes into a device-readable buffer. |
        """
    static let exemptions = """
        | ID | Why |
        |---|---|
        | GHT-AAA-05 | The feature is not offered by this library, so nothing can be tested. |
        """
    // "@TST" stands for the test macro, so that the scanner reading this file does not take the
    // fixture for tests of the package.
    static let tests = """
        @TST("GHT-AAA-01, SPL-DEV-01: checks both")
        func a() {}
        @TST(
            "GHT-AAA-01: a second \\"quoted\\" test")
        func b() {}
        @TST("No ID here") func c() {}
        @TST("GHT-ZZZ-09: names an ID nobody states") func d() {}
        @TST func e() {}
        """.replacing("@TST", with: "@Test")

    static func catalog() -> RequirementCatalog {
        var catalog = RequirementCatalog()
        catalog.add(markdown: rules, document: "ours.md")
        catalog.add(markdown: virtio, document: "virtio-rules.md")
        catalog.add(markdown: exemptions, document: "not-applicable.md")
        catalog.finish()
        return catalog
    }

    static func index() -> TestIndex {
        var index = TestIndex()
        index.add(source: tests, file: "Tests/XTests/X.swift")
        return index
    }
}

@Suite("The conformance matrix generator")
struct ConformanceMatrixTests {
    @Test("GHT-CNF-04: both table shapes are read, with level, party and section; other tables are not")
    func catalog() {
        let catalog = Fixture.catalog()
        #expect(catalog.requirements.map(\.id) == ["GHT-AAA-01", "GHT-AAA-02", "GHT-AAA-03", "GHT-AAA-04", "GHT-AAA-05", "SPL-DEV-01"])
        #expect(catalog["GHT-AAA-02"]?.party == "Back-end")
        #expect(catalog["GHT-AAA-02"]?.chapter == "2. Things")
        #expect(catalog["SPL-DEV-01"]?.party == "Dev")
        #expect(catalog["SPL-DEV-01"]?.section == "§2.7.5.1")
        #expect(catalog["GHT-AAA-05"]?.strength == .must)
        #expect(catalog["GHT-AAA-03"]?.strength == .should)
        #expect(catalog["GHT-AAA-04"]?.strength == .may)
        #expect(catalog.problems.isEmpty)
    }

    @Test("GHT-CNF-04: a duplicate ID, a party-less area and an exemption of nothing are document problems")
    func documentProblems() {
        var catalog = RequirementCatalog()
        catalog.add(markdown: Fixture.virtio, document: "a.md")
        catalog.add(markdown: Fixture.virtio, document: "b.md")
        catalog.add(markdown: "| ID | Level | Rule |\n|---|---|---|\n| GHT-QQQ-01 | MUST | x |\n", document: "c.md")
        catalog.add(markdown: "| ID | Why |\n|---|---|\n| GHT-NOPE-01 | because it is not there at all |\n", document: "d.md")
        catalog.finish()
        #expect(catalog.problems.count == 3)
        #expect(catalog.problems.contains { $0.hasPrefix("SPL-DEV-01: stated twice") })
        #expect(catalog.problems.contains { $0.hasPrefix("GHT-QQQ-01") })
        #expect(catalog.problems.contains { $0.hasPrefix("GHT-NOPE-01") })
    }

    @Test("GHT-CNF-03: display names give their IDs: before the first colon, quotes unescaped, across a line break")
    func testIndex() {
        let index = Fixture.index()
        #expect(index.tests.count == 4)
        #expect(index.tests(naming: "GHT-AAA-01").map(\.title) == ["GHT-AAA-01, SPL-DEV-01: checks both", "GHT-AAA-01: a second \"quoted\" test"])
        #expect(index.tests(naming: "GHT-AAA-01").map(\.line) == [1, 3])
        #expect(index.tests(naming: "SPL-DEV-01").count == 1)
        #expect(RequirementID.named(byTitle: "FNV-1a-64 known values").isEmpty)
        #expect(RequirementID.named(byTitle: "IND-DEV-01 (WRITE ignored): x") == ["IND-DEV-01"])
    }

    @Test("GHT-CNF-01, GHT-CNF-02, GHT-CNF-03: an untested MUST, an unexplained SHOULD and an unknown ID are problems; a MAY and an exempted MUST are not")
    func gateProblems() {
        let matrix = ConformanceMatrix(catalog: Fixture.catalog(), tests: Fixture.index())
        #expect(matrix.problems.count == 3)
        #expect(matrix.problems.contains { $0.hasPrefix("GHT-AAA-02") && $0.contains("MUST") })
        #expect(matrix.problems.contains { $0.hasPrefix("GHT-AAA-03") && $0.contains("SHOULD") })
        #expect(matrix.problems.contains { $0.hasPrefix("GHT-ZZZ-09") })
        let status = Dictionary(uniqueKeysWithValues: matrix.entries.map { ($0.requirement.id, $0.status) })
        #expect(status["GHT-AAA-01"] == .notRun)
        #expect(status["GHT-AAA-04"] == .untested)
        #expect(status["GHT-AAA-05"] == .exempt)
    }

    @Test("GHT-CNF-06: a run's result lines give pass, FAIL and not run; parameterized, skipped and coloured lines are read")
    func runResults() {
        let output = """
            ◇ Test "GHT-AAA-01, SPL-DEV-01: checks both" started.
            \u{1B}[32m✔\u{1B}[0m Test "GHT-AAA-01, SPL-DEV-01: checks both" with 3 test cases passed after 0.010 seconds.
            ✘ Test "GHT-AAA-01: a second "quoted" test" recorded an issue at X.swift:4:5: Expectation failed
            ✘ Test "GHT-AAA-01: a second "quoted" test" failed after 0.020 seconds with 1 issue.
            ➜ Test "No ID here" skipped.
            ✘ Test run with 3 tests in 0 suites failed after 0.030 seconds with 1 issue.
            """
        let log = TestRunLog(output: output)
        #expect(log.isComplete)
        #expect(log.outcome(of: "GHT-AAA-01, SPL-DEV-01: checks both") == .passed)
        #expect(log.outcome(of: "GHT-AAA-01: a second \"quoted\" test") == .failed)
        #expect(log.outcome(of: "No ID here") == .skipped)
        let matrix = ConformanceMatrix(catalog: Fixture.catalog(), tests: Fixture.index(), run: log)
        let status = Dictionary(uniqueKeysWithValues: matrix.entries.map { ($0.requirement.id, $0.status) })
        #expect(status["SPL-DEV-01"] == .passed)
        #expect(status["GHT-AAA-01"] == .failed)
        #expect(matrix.problems.contains { $0.hasPrefix("GHT-AAA-01: failed") })

        let cut = TestRunLog(output: "✔ Test \"GHT-AAA-01, SPL-DEV-01: checks both\" passed after 0.1 seconds.\n")
        let unfinished = ConformanceMatrix(catalog: Fixture.catalog(), tests: Fixture.index(), run: cut)
        #expect(unfinished.problems.contains { $0.contains("did not finish") })
        #expect(unfinished.problems.contains { $0.hasPrefix("GHT-AAA-01: the run did not report") })
    }

    @Test("GHT-CNF-06: the report lists every requirement with level, party, tests and result, and is the same text every time")
    func report() {
        let log = TestRunLog(output: "✔ Test \"GHT-AAA-01, SPL-DEV-01: checks both\" passed after 0.1 seconds.\n✔ Test run with 1 test passed after 0.1 seconds.\n")
        let matrix = ConformanceMatrix(catalog: Fixture.catalog(), tests: Fixture.index(), run: log)
        let text = ConformanceReport.markdown(matrix)
        #expect(text == ConformanceReport.markdown(ConformanceMatrix(catalog: Fixture.catalog(), tests: Fixture.index(), run: log)))
        #expect(text.contains("| SPL-DEV-01 | MUST NOT | Dev | §2.7.5.1 | `X.swift` checks both | pass |"))
        #expect(text.contains("| GHT-AAA-04 | MAY | Back-end |  | — | untested |"))
        #expect(text.contains("| GHT-AAA-05 | SHOULD / MUST | The feature is not offered"))
        #expect(text.contains("## Problems"))
        for id in Fixture.catalog().requirements.map(\.id) {
            #expect(text.contains("| \(id) |"))
        }
    }
}
