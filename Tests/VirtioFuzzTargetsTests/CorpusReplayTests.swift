import Testing
import VirtioFuzzTargets

#if canImport(Glibc)
import Glibc
#endif

/// `Fuzz/` in this checkout, found from this file's path.
let fuzzDirectory: String = {
    var path = #filePath
    for _ in 0..<3 { path = String(path[..<path.lastIndex(of: "/")!]) }   // Tests/VirtioFuzzTargetsTests/<file>
    return path + "/Fuzz"
}()

/// The files of a folder (none if it does not exist), with their contents.
func files(in directory: String) -> [(name: String, bytes: [UInt8])] {
    guard let dir = opendir(directory) else { return [] }
    defer { closedir(dir) }
    var result: [(String, [UInt8])] = []
    while let entry = readdir(dir) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        guard !name.hasPrefix("."), let f = fopen(directory + "/" + name, "rb") else { continue }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = fread(&buffer, 1, buffer.count, f)
            if n == 0 { break }
            bytes += buffer[..<n]
        }
        fclose(f)
        result.append((name, bytes))
    }
    return result.sorted { $0.0 < $1.0 }
}

@Suite("Fuzz corpora replayed through the fuzz targets")
struct CorpusReplayTests {
    static let targets = FuzzTargets.all.map(\.name)

    static func run(_ name: String, _ bytes: [UInt8]) {
        let target = FuzzTargets.all.first { $0.name == name }!
        bytes.withUnsafeBytes { target.run($0) }
    }

    @Test("Every seed runs without a finding", arguments: targets)
    func seeds(_ name: String) {
        let seeds = FuzzTargets.seeds(name)
        #expect(!seeds.isEmpty)
        for seed in seeds { Self.run(name, seed) }
    }

    @Test("The checked-in corpus holds every seed the generator makes (Fuzz/Sources/fuzz-seeds)", arguments: targets)
    func corpusMatchesGenerator(_ name: String) {
        let checkedIn = Set(files(in: "\(fuzzDirectory)/Corpus/\(name)").map(\.bytes))
        for (i, seed) in FuzzTargets.seeds(name).enumerated() {
            #expect(checkedIn.contains(seed), "seed \(i) of \(name) is not in Fuzz/Corpus/\(name): run Fuzz/run.sh --seeds")
        }
    }

    @Test("Every corpus file and every regression input replays without a finding", arguments: targets)
    func replay(_ name: String) {
        let inputs = files(in: "\(fuzzDirectory)/Corpus/\(name)") + files(in: "\(fuzzDirectory)/Regressions/\(name)")
        #expect(!inputs.isEmpty, "no inputs under \(fuzzDirectory)")
        for input in inputs { Self.run(name, input.bytes) }
    }

    @Test("Random mutations of the seeds run without a finding (a deterministic mini-fuzz)", arguments: targets)
    func mutations(_ name: String) {
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15 ^ UInt64(name.utf8.count)
        func next() -> UInt64 {
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            return state
        }
        let seeds = FuzzTargets.seeds(name)
        for _ in 0..<(name == "vhost-user" || name == "session" ? 60 : 300) {
            var bytes = seeds[Int(next() % UInt64(seeds.count))]
            for _ in 0..<(1 + Int(next() % 8)) {
                guard !bytes.isEmpty else { break }
                let at = Int(next() % UInt64(bytes.count))
                switch next() % 4 {
                case 0: bytes[at] = UInt8(truncatingIfNeeded: next())
                case 1: bytes[at] ^= 1 << UInt8(next() % 8)
                case 2: bytes.removeSubrange(at..<min(bytes.count, at + Int(next() % 16)))
                default: bytes.insert(contentsOf: (0..<Int(next() % 8)).map { _ in UInt8(truncatingIfNeeded: next()) }, at: at)
                }
            }
            Self.run(name, bytes)
        }
    }
}

@Suite("Fuzz seeds reach deep")
struct SeedDepthTests {
    @Test("The vhost-user seeds negotiate, start a queue (guest-physical and grant mode) and complete the chain they wrote")
    func vhostUserSeedsCompleteAChain() throws {
        for (i, seed) in FuzzTargets.seeds("vhost-user").enumerated() {
            let report = try #require(seed.withUnsafeBytes { VhostUserTarget.session($0) })
            #expect(report.chains == 1, "seed \(i): \(report)")
            #expect(report.end == .disconnected && report.brokenQueues.isEmpty, "seed \(i): \(report)")
        }
    }
}
