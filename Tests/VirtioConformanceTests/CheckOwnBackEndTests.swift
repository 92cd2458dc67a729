import Testing
import VirtioConformance
import VirtioSystem

extension CheckerTests {
    @Test("GHT-CHK-12, GHT-CHK-11, GHT-CHK-04: this project's blk back-end, in process, passes every case (hostile input included) or is n/a", .timeLimit(.minutes(1)))
    func ownBackEndIsClean() throws {
        let (directory, image) = try CheckSupport.image()
        defer { directory.remove() }
        let (backEnd, path) = try CheckSupport.ownBlockBackEnd(image: image)
        defer { backEnd.stop() }
        let results = CheckSupport.run(.socket(path))
        #expect(results.count == CheckCase.all.count)
        #expect(results.allSatisfy { $0.outcome == .pass || $0.outcome == .notApplicable }, "\(CheckSupport.summary(results))")
        // The hostile cases ran and passed: ours breaks the queue or closes, and survives.
        #expect(results.filter { $0.name.hasPrefix("hostile-") && $0.outcome == .pass }.count >= 10)
        // GHT-CHK-04: every case names IDs, and each is stated in Spec/.
        let catalog = try ConformanceSources(root: packageRoot).catalog
        for c in CheckCase.all {
            #expect(!c.requirements.isEmpty, "\(c.name) names no requirement")
            for id in c.requirements { #expect(catalog[id] != nil, "\(c.name) names \(id), which Spec/ does not state") }
        }
    }

    @Test("GHT-CHK-01, GHT-CHK-06, GHT-CHK-12: `serve --device blk` as --backend-cmd: a fresh process per case, each killed, reaped and its socket removed; nothing of the checker's stays open", .timeLimit(.minutes(1)))
    func ownServeProcessPerCase() throws {
        let (directory, image) = try CheckSupport.image()
        defer { directory.remove() }
        let log = directory.path + "/pids"
        // The shell records its pid (exec keeps it for serve) and the socket path, then becomes serve.
        let command = "/bin/sh -c 'echo $$ $0 >> \(log); exec \(CheckSupport.program) serve --device blk --image \(image) --socket $0' {sock}"
        let results = CheckSupport.run(.command(command), "blk-")
        #expect(results.count == 8)
        #expect(results.allSatisfy { $0.outcome == .pass || $0.outcome == .notApplicable }, "\(CheckSupport.summary(results))")
        let lines = try TextFile.read(log).split(separator: "\n").map { $0.split(separator: " ").map(String.init) }
        // One process per case (the device probe adds none: it runs on the first case's process).
        #expect(Set(lines.map { $0[0] }).count == results.count)
        for line in lines {
            #expect(!TextFile.exists("/proc/\(line[0])"), "process \(line[0]) outlived its case")
            #expect(!TextFile.exists(line[1]), "socket \(line[1]) outlived its case")
        }
        #expect(CheckSupport.checkerFilesOpen().isEmpty, "\(CheckSupport.checkerFilesOpen())")
    }

    @Test("GHT-CHK-12, GHT-CHK-13: `serve --device net` is found net by --device auto and passes the net cases; the blk cases are n/a", .timeLimit(.minutes(1)))
    func ownNetServeIsClean() {
        let command = "\(CheckSupport.program) serve --device net --socket {sock}"
        let results = BackEndChecker(target: .command(command), device: .auto, timeoutPerCaseMilliseconds: 1000)
            .run(cases: BackEndChecker.cases(matching: "net-,blk-get-id"))
        #expect(results.map(\.name) == ["blk-get-id", "net-mac-config", "net-tx-frame"])
        #expect(results.map(\.outcome) == [.notApplicable, .pass, .pass], "\(CheckSupport.summary(results))")
    }
}
