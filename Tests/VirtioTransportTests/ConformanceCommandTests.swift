import Testing

#if canImport(Glibc)
import Glibc
#endif
import VirtioSystem

/// `virtio-grant conformance` on a small package tree of its own: what it writes, what
/// `--check` says about drift, and that problems set the exit status.
@Suite("virtio-grant conformance", .tags(.transport))
struct ConformanceCommandTests {
    /// A package root under /tmp with one rule, one test naming it, and a run's output.
    struct Tree {
        let root: String

        init(rules: String, tests: String) throws {
            var template = Array("/tmp/vg-conformance-XXXXXX".utf8CString)
            let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
            root = String(cString: try #require(made))
            for dir in ["Spec", "Tests", "Tests/XTests"] { mkdir(root + "/" + dir, 0o755) }
            try TextFile.write(rules, to: root + "/Spec/rules.md")
            try TextFile.write(tests, to: root + "/Tests/XTests/XTests.swift")
        }

        func remove() {
            for file in ["Spec/rules.md", "Spec/CONFORMANCE.md", "Tests/XTests/XTests.swift", "run.txt"] { unlink(root + "/" + file) }
            for dir in ["Tests/XTests", "Tests", "Spec", ""] { rmdir(root + "/" + dir) }
        }
    }

    static let rules = """
        | Area | Party |
        |---|---|
        | GHT-XYZ | Back-end |

        | ID | Level | Rule |
        |---|---|---|
        | GHT-XYZ-01 | MUST | Something the device must do. |
        """
    static let test = "@Test(\"GHT-XYZ-01: the device does it\") func x() {}\n"

    @Test("GHT-CNF-06: the command writes the matrix from a run; --check passes on it and fails, exit 1, once it drifts")
    func writeThenCheck() throws {
        let tree = try Tree(rules: Self.rules, tests: Self.test)
        defer { tree.remove() }
        try TextFile.write("✔ Test \"GHT-XYZ-01: the device does it\" passed after 0.1 seconds.\n✔ Test run with 1 test passed after 0.1 seconds.\n",
                           to: tree.root + "/run.txt")
        let (written, log) = try runVirtioGrant(["conformance", "--root", tree.root, "--test-output", tree.root + "/run.txt"])
        #expect(written == .exited(0), "\(log)")
        let matrix = try TextFile.read(tree.root + "/Spec/CONFORMANCE.md")
        #expect(matrix.contains("| GHT-XYZ-01 | MUST | Back-end |  | `XTests.swift` the device does it | pass |"), "\(matrix)")

        let (checked, checkLog) = try runVirtioGrant(["conformance", "--root", tree.root, "--test-output", tree.root + "/run.txt", "--check"])
        #expect(checked == .exited(0), "\(checkLog)")

        // The test now fails in the run: the committed matrix says pass, so it drifted, and a
        // failed test is a problem of its own.
        try TextFile.write("✘ Test \"GHT-XYZ-01: the device does it\" failed after 0.1 seconds with 1 issue.\n✘ Test run with 1 test failed after 0.1 seconds with 1 issue.\n",
                           to: tree.root + "/run.txt")
        let (drifted, driftLog) = try runVirtioGrant(["conformance", "--root", tree.root, "--test-output", tree.root + "/run.txt", "--check"])
        #expect(drifted == .exited(1))
        #expect(driftLog.contains("is not what the sources and the run give") && driftLog.contains("GHT-XYZ-01: failed"), "\(driftLog)")
        #expect(try TextFile.read(tree.root + "/Spec/CONFORMANCE.md") == matrix, "--check never writes")
    }

    @Test("GHT-CNF-01: an untested MUST makes the command exit 1 and name it")
    func untestedMust() throws {
        let tree = try Tree(rules: Self.rules, tests: "@Test(\"Names nothing\") func x() {}\n")
        defer { tree.remove() }
        let (status, log) = try runVirtioGrant(["conformance", "--root", tree.root])
        #expect(status == .exited(1))
        #expect(log.contains("GHT-XYZ-01 (MUST, rules.md): a MUST that no test names"), "\(log)")
    }
}
