import VirtioConformance
import VirtioSystem

/// `virtio-grant conformance`: builds the conformance matrix from `Spec/`, the test sources and
/// a test run, writes `Spec/CONFORMANCE.md` (or, with `--check`, compares it with the file) and
/// reports the problems that fail the suite.
///
/// Exit status: 0 when the matrix has no problem (and, with `--check`, the file is current),
/// 1 otherwise, 2 for a usage error.
struct ConformanceCommand {
    let root: String
    let testOutput: String?
    let runTests: Bool
    let output: String
    let check: Bool

    init(_ arguments: ArraySlice<String>) throws(UsageError) {
        let options = try Options(arguments, options: ["root", "test-output", "output"], flags: ["run-tests", "check"])
        guard options.positional.isEmpty else {
            throw UsageError(description: "conformance takes no positional argument ('\(options.positional[0])')")
        }
        root = options.string("root") ?? "."
        testOutput = options.string("test-output")
        runTests = options.flag("run-tests")
        output = options.string("output") ?? root + "/Spec/" + ConformanceSources.matrixFile
        check = options.flag("check")
        if runTests && testOutput != nil {
            throw UsageError(description: "give either --test-output FILE or --run-tests, not both")
        }
    }

    func run() -> Int32 {
        var stderr = StandardStream.error
        do {
            let sources = try ConformanceSources(root: root)
            var log: TestRunLog?
            if runTests {
                log = TestRunLog(output: try runSwiftTest())
            } else if let testOutput {
                log = TestRunLog(output: try TextFile.read(testOutput))
            }
            let matrix = sources.matrix(run: log)
            let text = ConformanceReport.markdown(matrix)
            var status: Int32 = 0
            if check {
                let current = TextFile.exists(output) ? try TextFile.read(output) : ""
                if current != text {
                    print("virtio-grant conformance: \(output) is not what the sources and the run give; regenerate it with `virtio-grant conformance --test-output FILE` and commit it", to: &stderr)
                    print(firstDifference(current, text), to: &stderr)
                    status = 1
                }
            } else {
                try TextFile.write(text, to: output)
            }
            for problem in matrix.problems {
                print("conformance: \(problem)", to: &stderr)
            }
            let musts = matrix.count(strength: .must)
            print("conformance: \(matrix.entries.count) requirements (\(musts) MUST: \(matrix.count(strength: .must, status: .passed)) pass, \(matrix.count(strength: .must, status: .exempt)) n/a, \(matrix.count(strength: .must, status: .untested)) untested); \(sources.tests.tests.count) tests; \(matrix.problems.count) problems")
            return matrix.problems.isEmpty ? status : 1
        } catch {
            print("virtio-grant conformance: \(error)", to: &stderr)
            return 1
        }
    }

    /// Runs `swift test` in the package root, its output going to a file under `.build` (and
    /// read back); a failing run is not an error here: its failures show in the matrix.
    private func runSwiftTest() throws(SystemError) -> String {
        let path = root + "/.build/conformance-test-output.txt"
        let child = try ChildProcess.spawn(path: "/bin/sh", arguments: ["-c", "cd \"$1\" && swift test > \"$2\" 2>&1", "sh", root, path])
        _ = try child.wait()
        return try TextFile.read(path)
    }

    private func firstDifference(_ a: String, _ b: String) -> String {
        let left = a.split(separator: "\n", omittingEmptySubsequences: false)
        let right = b.split(separator: "\n", omittingEmptySubsequences: false)
        for i in 0..<max(left.count, right.count) {
            let l = i < left.count ? String(left[i]) : "(end of file)"
            let r = i < right.count ? String(right[i]) : "(end of file)"
            if l != r { return "first difference at line \(i + 1):\n  file:      \(l)\n  generated: \(r)" }
        }
        return "the files differ"
    }
}
