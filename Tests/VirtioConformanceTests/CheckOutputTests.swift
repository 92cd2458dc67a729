import Testing
import VirtioConformance
import VirtioSystem

extension CheckerTests {
    @Test("GHT-CHK-14: the Markdown matrix has the counts, a row per case and the evidence of what did not pass; JSON lines one object per case")
    func outputs() {
        let results = [CheckResult(name: "a", requirements: ["X-01"], outcome: .pass, evidence: "", milliseconds: 3),
                       CheckResult(name: "b", requirements: ["X-02", "X-03"], outcome: .crash, evidence: "signaled(7)\n\"q\"", milliseconds: 5)]
        let markdown = results.markdownMatrix(implementation: "impl")
        #expect(markdown.contains("pass 1 · fail 0 · crash 1 · hang 0 · n/a 0"))
        #expect(markdown.contains("| a | X-01 | pass | 3 |") && markdown.contains("| b | X-02, X-03 | crash | 5 |"))
        #expect(markdown.contains("### b (crash)\n\n```\nsignaled(7)\n\"q\"\n```"))
        #expect(!markdown.contains("### a"))
        #expect(results[1].jsonLine == #"{"case":"b","requirements":["X-02","X-03"],"outcome":"crash","ms":5,"evidence":"signaled(7)\n\"q\""}"#)
    }

    @Test("GHT-CHK-14, GHT-CHK-15: `virtio-grant check --case F --output-dir D` runs the matching cases and writes matrix.md and results.jsonl", .timeLimit(.minutes(1)))
    func commandWritesOutputs() throws {
        let directory = try TemporaryDirectory(prefix: "vg-check-out")
        defer { directory.remove() }
        let sink = try SharedMemory.createUnsealed(name: "check-command-output", size: 64 * 1024)
        defer { sink.unmap() }
        let child = try ChildProcess.spawn(path: CheckSupport.program, arguments: [
            "check", "--backend-cmd", "\(CheckSupport.program) check-faulty-backend --fault bad-used-id --socket {sock}",
            "--case", "blk-get", "--output-dir", directory.path, "--timeout-per-case", "500", "--name", "faulty"],
            fileDescriptors: [(child: 1, parent: sink.fd), (child: 2, parent: sink.fd)])
        #expect(try child.wait(timeoutMilliseconds: 20_000) == .exited(1))
        let lines = try TextFile.read(directory.path + "/results.jsonl").split(separator: "\n")
        #expect(lines.count == 1)
        #expect(lines.first?.hasPrefix(#"{"case":"blk-get-id","requirements":["GHT-BLK-10"],"outcome":"fail""#) == true)
        #expect(try TextFile.read(directory.path + "/matrix.md").hasPrefix("# Conformance of faulty\n\npass 0 · fail 1"))
    }

    @Test("GHT-CHK-15: a filter matching no case, a command without {sock}, and both or neither target are usage errors", .timeLimit(.minutes(1)))
    func usageErrors() throws {
        #expect(BackEndChecker.cases(matching: "hostile-").count == 14)
        #expect(BackEndChecker.cases(matching: nil).count == CheckCase.all.count)
        let sink = try SharedMemory.createUnsealed(name: "check-usage-stderr", size: 4096)
        defer { sink.unmap() }
        for arguments in [["check", "--socket", "/nonexistent", "--case", "no-such-case"], ["check", "--backend-cmd", "true"],
                          ["check"], ["check", "--socket", "/x", "--backend-cmd", "y {sock}"]] {
            let child = try ChildProcess.spawn(path: CheckSupport.program, arguments: arguments,
                                               fileDescriptors: [(child: 2, parent: sink.fd)])
            #expect(try child.wait(timeoutMilliseconds: 10_000) == .exited(2), "\(arguments)")
        }
    }
}
