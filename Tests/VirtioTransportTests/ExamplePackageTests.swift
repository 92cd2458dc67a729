import Testing
import VirtioSystem
import VirtioTransport

#if canImport(Glibc)
import Glibc
#endif

/// The guide's example package (Documentation/WritingADevice.md, Examples/RandomDevice) is
/// built as a package of its own and its device served, so that the guide stays true.
///
/// The package is built (its tests too) and tested in a scratch directory of its own under
/// /tmp, kept between runs: the first build of a checkout compiles the library (about 75 s on
/// 2 busy cores), later ones only what changed (a few seconds). It runs under `nice` so that the tests running beside it keep their timing.
@Suite("The guide's example package", .tags(.transport), .serialized)
struct ExamplePackageTests {
    /// The package root: three levels above this file (Tests/VirtioTransportTests/this.swift).
    static var root: String {
        var path = "\(#filePath)"
        for _ in 0..<3 { path = String(path[..<(path.lastIndex(of: "/") ?? path.startIndex)]) }
        return path
    }

    /// A scratch directory per checkout, so that two checkouts do not share build products, and
    /// per version of the protocol the example conforms to: SwiftPM's incremental build does not
    /// recompile a dependent package's conformance when the protocol gains a requirement, and
    /// the stale witness table crashes the example's process.
    static var scratch: String {
        let protocolFiles = ["Sources/VirtioTransport/Device/VirtioDevice.swift", "Sources/VirtioGrant/VirtioGrant.swift"]
        let bytes = Array(root.utf8) + protocolFiles.flatMap { (try? TextFile.bytes(root + "/" + $0)) ?? [] }
        let tag = bytes.reduce(UInt64(0xcbf2_9ce4_8422_2325)) { ($0 ^ UInt64($1)) &* 0x100_0000_01b3 }
        return "/tmp/virtio-grant-example-\(String(tag, radix: 16))"
    }

    /// Runs `script` with `sh -c` (so `swift` and `nice` come from PATH), its output collected.
    static func run(_ script: String, _ arguments: [String], timeoutMilliseconds: Int32) throws -> (ChildProcess.ExitStatus?, [String]) {
        let pipe = try Pipe()
        let process = try ChildProcess.spawn(path: "/bin/sh", arguments: ["-c", script, "sh"] + arguments,
                                             fileDescriptors: [(child: 1, parent: pipe.writeEnd), (child: 2, parent: pipe.writeEnd)])
        pipe.writeEnd.close()
        var reader = LineReader(pipe.readEnd)
        var lines: [String] = []
        let deadline = ContinuousClock.now.advanced(by: .milliseconds(Int(timeoutMilliseconds)))
        while ContinuousClock.now < deadline {
            let left = Int32(clamping: (deadline - ContinuousClock.now).components.seconds * 1000 + 1)
            guard let line = try? reader.readLine(timeoutMilliseconds: left) else { break }
            lines.append(line)
        }
        if let status = try process.wait(timeoutMilliseconds: 1000) { return (status, lines) }
        try process.kill()
        return (try process.wait(timeoutMilliseconds: 5000), lines)
    }

    @Test("GHT-EMB-09: Examples/RandomDevice builds against this package with import VirtioGrant alone, its tests pass, and its process serves a front-end until SIGTERM")
    func exampleBuildsAndServes() throws {
        let package = Self.root + "/Examples/RandomDevice"
        let start = ContinuousClock.now
        // A scratch directory kept from an older checkout can hold a build plan naming files
        // that were renamed since ("missing inputs"): then once more from a clean one.
        let script = """
            set -eu
            package="${1:?}" scratch="${2:?}"
            case "$scratch" in /tmp/virtio-grant-example-?*) ;; *) echo "unexpected scratch directory $scratch"; exit 2;; esac
            build() { nice -n 10 swift build --package-path "$package" --scratch-path "$scratch" --build-tests; }
            build || { echo "retrying in a clean scratch directory"; rm -rf "$scratch"; build; }
            nice -n 10 swift test --package-path "$package" --scratch-path "$scratch" --skip-build
            """
        let (status, output) = try Self.run(script, [package, Self.scratch], timeoutMilliseconds: 15 * 60_000)
        #expect(status == .exited(0), "swift build, swift test: \(status.map { "\($0)" } ?? "did not finish")\n\(output.suffix(40).joined(separator: "\n"))")
        guard status == .exited(0) else { return }
        #expect(output.contains { $0.contains("Test run with 3 tests") && $0.contains("passed") }, "the example's own tests ran and passed")
        print("ExamplePackageTests: the example built and tested in \(ContinuousClock.now - start)")

        // Its process: serves until SIGTERM, then prints each session's report on stdout. Its
        // log (on by default) goes to stderr: the line that says it serves is the cue.
        let socket = temporarySocketPath("example")
        let out = try Pipe(), err = try Pipe()
        let server = try ChildProcess.spawn(path: Self.scratch + "/debug/random-device", arguments: [socket],
                                            fileDescriptors: [(child: 1, parent: out.writeEnd), (child: 2, parent: err.writeEnd)])
        out.writeEnd.close()
        err.writeEnd.close()
        defer { if server.exitStatus == nil { try? server.kill() } }
        var log = LineReader(err.readEnd)
        var serving = ""
        while !serving.contains("serving \(socket) until SIGINT or SIGTERM") {
            serving = try log.readLine(timeoutMilliseconds: 10_000)
        }
        #expect(serving.contains(" info "), "a timestamped info line: \(serving)")

        let frontEnd = try FrontEnd.connect(socketPath: socket)
        let queue = frontEnd.queues[0]
        let tokens = try (0..<4).map { _ in try queue.submit([], replyCapacity: 128) }
        try queue.publish()
        var replies: [UInt64: [UInt8]] = [:]
        while replies.count < tokens.count {
            for completion in try queue.waitForCompletions(timeoutMilliseconds: 5000) { replies[completion.token] = completion.reply }
        }
        #expect(tokens.allSatisfy { replies[$0]?.count == 128 })
        #expect(Set(replies.values).count == 4, "four different random replies")
        frontEnd.close()

        try server.kill(SIGTERM)
        #expect(try server.wait(timeoutMilliseconds: 10_000) == .exited(0))
        var reports = LineReader(out.readEnd)
        let report = try reports.readLine(timeoutMilliseconds: 5000)
        #expect(report.hasPrefix("session 1") && report.contains("4 chains") && report.hasSuffix("disconnected"), "\(report)")
    }
}
