import Testing

#if canImport(Glibc)
import Glibc
#endif
import VirtioSystem

/// A `virtio-grant` process (the executable beside the test binary) whose JSON lines are read
/// as it prints them; killed when the test lets go of it.
final class SpawnedProgram {
    let process: ChildProcess
    private var output: LineReader

    /// Spawns `virtio-grant arguments...`; its standard output (and error, if `standardError`)
    /// is read here.
    init(_ arguments: [String], standardError: Bool = false) throws {
        let pipe = try Pipe()
        let descriptors = standardError ? [(child: Int32(1), parent: pipe.writeEnd), (child: Int32(2), parent: pipe.writeEnd)]
            : [(child: Int32(1), parent: pipe.writeEnd)]
        process = try ChildProcess.spawn(path: try ChildProcess.executableDirectory + "/virtio-grant", arguments: arguments,
                                         fileDescriptors: descriptors)
        pipe.writeEnd.close()
        output = LineReader(pipe.readEnd)
    }

    /// Every line still to come, until the program closes its output (or 10 s of silence).
    func remainingOutput() -> String {
        var text = ""
        while let line = try? output.readLine(timeoutMilliseconds: 10_000) { text += line + "\n" }
        return text
    }

    /// The next line containing `text`.
    func line(containing text: String, timeoutMilliseconds: Int32 = 30_000) throws -> String {
        while true {
            let line = try output.readLine(timeoutMilliseconds: timeoutMilliseconds)
            if line.contains(text) { return line }
        }
    }

    func finish() throws -> ChildProcess.ExitStatus? {
        if let status = try process.wait(timeoutMilliseconds: 30_000) { return status }
        try process.kill()
        return try process.wait(timeoutMilliseconds: 5000)
    }

    deinit {
        if process.exitStatus == nil {
            try? process.kill()
            _ = try? process.wait(timeoutMilliseconds: 5000)
        }
    }
}

/// A number field of a flat JSON line.
func field(_ name: String, in line: String) -> Double? {
    let key = Array("\"\(name)\":".utf8), bytes = Array(line.utf8)
    guard key.count <= bytes.count,
          let at = (0...(bytes.count - key.count)).first(where: { Array(bytes[$0..<$0 + key.count]) == key }) else { return nil }
    let value = bytes[(at + key.count)...].prefix { "0123456789.-e".utf8.contains($0) }
    return Double(String(decoding: value, as: UTF8.self))
}

/// A back-end process sharing `vfs` functions among `guests` guest processes (echo device,
/// throughput workload), started one after the other so that session k is guest k.
func runSharedDevice(vfs: Int, mapping: String, guests: Int, seconds: Double = 1) throws
    -> (sessions: [Int: String], guestExits: [ChildProcess.ExitStatus?], guestLines: [String], elapsed: Double) {
    let socket = "/tmp/vg-sched-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
    let serve = try SpawnedProgram(["serve", "--socket", socket, "--device", "echo", "--vfs", "\(vfs)", "--mapping", mapping,
                                    "--sessions", "\(guests)", "--slice-ms", "2"])
    _ = try serve.line(containing: "\"listening\"")
    var start = timespec()
    clock_gettime(CLOCK_MONOTONIC, &start)
    var running: [SpawnedProgram] = []
    for g in 1...guests {
        running.append(try SpawnedProgram(["guest", "--socket", socket, "--domain", "\(g)", "--workload", "throughput",
                                           "--seconds", "\(seconds)", "--outstanding", "32"]))
        // Connection order is guest order: wait until the back-end has this session.
        usleep(150_000)
    }
    var lines: [String] = []
    var exits: [ChildProcess.ExitStatus?] = []
    for g in running {
        lines.append((try? g.line(containing: "\"guest\"")) ?? "")
        exits.append(try g.finish())
    }
    var end = timespec()
    clock_gettime(CLOCK_MONOTONIC, &end)
    var sessions: [Int: String] = [:]
    for _ in 0..<guests {
        let line = try serve.line(containing: "\"session\"")
        if let id = field("id", in: line) { sessions[Int(id)] = line }
    }
    _ = try serve.finish()
    let elapsed = Double(end.tv_sec - start.tv_sec) + Double(end.tv_nsec - start.tv_nsec) / 1e9
    return (sessions, exits, lines, elapsed)
}

/// Checks that each of the first `count` guests exited 0 and was served with no broken queue;
/// returns the seconds they held functions, summed.
func expectServed(_ r: (sessions: [Int: String], guestExits: [ChildProcess.ExitStatus?], guestLines: [String], elapsed: Double),
                  guests count: Int) throws -> Double {
    var held = 0.0
    for g in 0..<count {
        #expect(r.guestExits[g] == .exited(0), "guest \(g + 1): \(r.guestLines[g])")
        let session = try #require(r.sessions[g + 1])
        #expect((field("sched_requests", in: session) ?? 0) > 0, "\(session)")
        #expect(field("broken_queues", in: session) == 0)
        held += (field("sched_hold_ms", in: session) ?? 0) / 1000
    }
    return held
}

@Suite("Guest processes sharing virtual functions", .serialized)
struct ProcessSharingTests {
    @Test("GHT-SCH-01: 1:1 — two guest processes each get a function of their own; a third is refused and its queue broken")
    func oneToOne() throws {
        let r = try runSharedDevice(vfs: 2, mapping: "1:1", guests: 3)
        for g in 0..<2 {
            #expect(r.guestExits[g] == .exited(0), "guest \(g + 1): \(r.guestLines[g])")
            let session = try #require(r.sessions[g + 1])
            #expect((field("sched_requests", in: session) ?? 0) > 0)
            // Nobody else may use its function: it is never preempted.
            #expect(field("sched_preemptions", in: session) == 0, "\(session)")
        }
        #expect(r.guestExits[2] != .exited(0), "the third guest has no function: \(r.guestLines[2])")
        let third = try #require(r.sessions[3])
        #expect(field("broken_queues", in: third) == 1, "\(third)")
        #expect(!third.contains("sched_requests"))
    }

    @Test("GHT-SCH-01, GHT-SCH-02: 1:n — three guest processes time-share one function; their holds never overlap")
    func oneToMany() throws {
        let r = try runSharedDevice(vfs: 1, mapping: "1:n", guests: 3)
        let held = try expectServed(r, guests: 3)
        // One function, one holder at a time: the holds add up to at most the time that passed.
        #expect(held > 0 && held <= r.elapsed + 0.05, "held \(held) s in \(r.elapsed) s")
    }

    @Test("GHT-SCH-01: n:m — three guest processes on a pool of two functions, all served, at most two holds at once")
    func pool() throws {
        let r = try runSharedDevice(vfs: 2, mapping: "n:m", guests: 3)
        let held = try expectServed(r, guests: 3)
        #expect(held > 0 && held <= 2 * r.elapsed + 0.05, "held \(held) s in \(r.elapsed) s")
    }
}
