import Testing
import VirtioConformance
import VirtioSystem

/// The fuzzer against this project's blk back-end and the faulty one (Spec/checker.md GHT-CHK-16..20).
extension CheckerTests {
    @Test("GHT-CHK-16: the same seed gives the same cases: the seeds unmutated first, then one to four mutations each")
    func fuzzerIsDeterministic() {
        let a = BackEndFuzzer(target: .socket("/nonexistent"), seed: 42).cases(40)
        let b = BackEndFuzzer(target: .socket("/nonexistent"), seed: 42).cases(40)
        let c = BackEndFuzzer(target: .socket("/nonexistent"), seed: 43).cases(40)
        #expect(a == b)
        #expect(a != c)
        #expect(a.prefix(6).map(\.seed) == FuzzCase.Seed.seeds(for: .blk) && a.prefix(6).allSatisfy { $0.mutations.isEmpty })
        #expect(a.dropFirst(6).allSatisfy { (1...4).contains($0.mutations.count) && $0.seed.device == .blk })
        #expect(BackEndFuzzer(target: .socket("/x"), device: .net).cases(10).allSatisfy { $0.seed == .netTransmit })
    }

    @Test("GHT-CHK-19: a reproducer file reads back as the case, the outcome and the command it was saved with")
    func reproducerRoundTrips() throws {
        let mutations: [FuzzCase.Mutation] = [.descriptor(.indirect, index: 3, .flags, 7), .availIndex(delta: 1000), .availHead(200),
                                              .message(request: 13, payload: [1, 2, 0xff], fds: 2), .message(request: 9999, payload: [], fds: 0),
                                              .truncate(0x9000), .regionScale(4)]
        let result = CheckResult(name: "fuzz-indirect", requirements: [], outcome: .crash, evidence: "the back-end process ended: signaled(11)", milliseconds: 1)
        let finding = FuzzFinding(fuzzCase: FuzzCase(seed: .indirect, mutations: mutations), result: result,
                                  originalMutations: mutations, backendCommand: "be --socket {sock}")
        let back = try FuzzReproducer.parse(finding.reproducer).get()
        #expect(back.fuzzCase == finding.fuzzCase)
        #expect(back.expected == .crash)
        #expect(back.backendCommand == "be --socket {sock}")
        #expect(throws: FuzzReproducerError.self) { try FuzzReproducer.parse("seed get-id\nmutation desc main 0 color 1\n").get() }
    }

    @Test("GHT-CHK-20: against `serve --device blk` the fuzzer finds nothing in 20 runs (fresh process each)", .timeLimit(.minutes(1)))
    func ownBlockBackEndIsClean() throws {
        let (directory, image) = try CheckSupport.image()
        defer { directory.remove() }
        let fuzzer = BackEndFuzzer(target: .command("\(CheckSupport.program) serve --device blk --image \(image) --socket {sock}"), seed: 3)
        let report = fuzzer.run(runs: 20)
        #expect(report.runs == 20)
        #expect(report.findings.isEmpty, "\(report.findings.map { $0.reproducer }.joined(separator: "\n"))")
        #expect(CheckSupport.checkerFilesOpen().isEmpty)
    }

    @Test("GHT-CHK-17, GHT-CHK-19: each fault class of the faulty back-end is found, minimized, saved, and `check --replay` reproduces it",
          .timeLimit(.minutes(2)), arguments: [
              (FaultyBlockBackEnd.Fault.badUsedID, CheckOutcome.fail, "USD-DEF-02"),
              (.longUsedLength, .fail, "USD-DEV-02"),
              (.crashOnNestedIndirect, .crash, "signaled("),
              (.silent, .hang, "no answer"),
              (.writeReadable, .fail, "GHT-CHK-18: the back-end wrote device-readable memory"),
          ])
    func faultsAreFound(fault: FaultyBlockBackEnd.Fault, outcome: CheckOutcome, evidence: String) throws {
        let directory = try TemporaryDirectory(prefix: "vg-fuzz")
        defer { directory.remove() }
        guard case .command(let command) = CheckSupport.faulty(fault) else { return }
        var fuzzer = BackEndFuzzer(target: .command(command), seed: 1)
        fuzzer.timeoutPerRunMilliseconds = 300
        fuzzer.outputDirectory = directory.path
        let report = fuzzer.run(runs: 8, seconds: 30)
        let found = try #require(report.findings.first { $0.result.outcome == outcome && $0.result.evidence.contains(evidence) },
                                 "\(report.findings.map { "\($0.result.outcome): \($0.result.evidence.prefix(300))" })")
        #expect(found.fuzzCase.mutations.count <= found.originalMutations.count)
        let file = try #require(report.files.first { (try? TextFile.read($0)) == found.reproducer })
        // The reproducer names its back-end command: `check --replay FILE` alone runs it again.
        let replay = try SpawnedOutput.run([CheckSupport.program, "check", "--replay", file, "--timeout-per-case", "300"])
        #expect(replay.contains("replay: reproduced: \(outcome.rawValue)"), "\(replay)")
        #expect(replay.contains(evidence), "the replay's evidence names the same rule")
    }

    @Test("GHT-CHK-19: minimizing drops every mutation the finding does not need, within its bound of runs", .timeLimit(.minutes(1)))
    func minimizing() throws {
        var fuzzer = BackEndFuzzer(target: CheckSupport.faulty(.crashOnNestedIndirect), seed: 1)
        fuzzer.timeoutPerRunMilliseconds = 300
        let noise: [FuzzCase.Mutation] = [.message(request: 9999, payload: [1, 2, 3, 4], fds: 0), .descriptor(.main, index: 20, .len, 5),
                                          .availIndex(delta: 1)]
        let finding = try #require(fuzzer.reduce(FuzzCase(seed: .nestedIndirect, mutations: noise)))
        #expect(finding.result.outcome == .crash)
        #expect(finding.fuzzCase.mutations.isEmpty && finding.originalMutations == noise)
        #expect(fuzzer.reduce(FuzzCase(seed: .getID, mutations: noise)) == nil, "no finding without the nested table")
    }

    @Test("GHT-CHK-18: a device that writes only where it may leaves every canary intact; the seeds and a minimized case pass the faulty back-end without its fault", .timeLimit(.minutes(1)))
    func canariesHoldForACorrectDevice() {
        let fuzzer = BackEndFuzzer(target: CheckSupport.faulty(.none), seed: 9)
        let report = fuzzer.run(runs: 25)
        #expect(report.findings.isEmpty, "\(report.findings.map { $0.result.evidence.prefix(400) })")
    }
}

/// A command's standard output and error, for the CLI replay.
enum SpawnedOutput {
    static func run(_ arguments: [String]) throws -> String {
        let output = try SharedMemory.createUnsealed(name: "check-fuzz-replay", size: 256 * 1024)
        defer { output.unmap() }
        let child = try ChildProcess.spawn(path: arguments[0], arguments: Array(arguments.dropFirst()),
                                           fileDescriptors: [(child: 1, parent: output.fd), (child: 2, parent: output.fd)])
        _ = try child.wait(timeoutMilliseconds: 30_000)
        let bytes = UnsafeRawBufferPointer(start: UnsafeRawPointer(bitPattern: output.range.startAddress), count: output.size)
        return String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
    }
}

/// The checker against DPDK's vhost PMD (Debian package `dpdk`; `.ci/run` installs it before `swift test`).
extension CheckerTests {
    static let testpmd = "/usr/bin/dpdk-testpmd"

    @Test("GHT-CHK-21: a transmitted frame completes on DPDK's vhost PMD, which starts its queues only once the receive queue is set up too", .timeLimit(.minutes(1)))
    func netRunsOnDPDK() {
        guard TextFile.exists(Self.testpmd) else {
            Issue.record("\(Self.testpmd) is not installed: apt-get install dpdk")
            return
        }
        let command = "\(Self.testpmd) --lcores '0@0,1@0' --no-huge -m 512 --single-file-segments --no-pci --file-prefix vgchk$$ "
            + "--vdev 'net_vhost0,iface={sock},queues=1' --log-level 'lib.eal:error' -- --total-num-mbufs=16384 --forward-mode=io "
            + "--auto-start --no-lsc-interrupt --stats-period=1"
        let results = BackEndChecker(target: .command(command), device: .net, timeoutPerCaseMilliseconds: 2000)
            .run(cases: BackEndChecker.cases(matching: "net-tx-frame"))
        #expect(results.map(\.outcome) == [.pass], "\(CheckSupport.summary(results))")
    }
}
