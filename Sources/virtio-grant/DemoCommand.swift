import VirtioCore
import VirtioSystem
import VirtioWorkloads

/// `virtio-grant demo`: one back-end process (`serve`, the checksum echo device) and `--guests`
/// front-end processes (`guest`), in a temporary directory. Each guest streams deterministic
/// data through the device in grant mode for `--seconds` and verifies every byte it gets back;
/// guest 1 also presents a handle it never granted halfway through: the back-end must refuse
/// it (a fault, the queue broken, DEVICE_NEEDS_RESET), guest 1 resets and carries on, and the
/// other guests must not notice. Exits 0 only if every check held.
struct DemoCommand {
    let seconds: Double
    let guests: Int
    /// The virtqueue format the guests negotiate.
    let ring: String
    let json: Bool
    /// `--vfs N`: the guests share N virtual functions of one device instead (SharedDeviceDemo).
    let functions: Int?
    /// `--restarts N`: the back-end is killed and restarted N times mid-stream instead (RestartDemo).
    let restarts: Int?

    init(_ arguments: ArraySlice<String>) throws(UsageError) {
        let options = try Options(arguments, options: ["seconds", "guests", "ring", "vfs", "restarts"], flags: ["json"])
        guard options.positional.isEmpty else { throw UsageError(description: "unexpected argument '\(options.positional[0])'") }
        seconds = try options.seconds("seconds", default: 3, max: 600)
        guests = try options.int("guests", default: 2, in: 1...16)
        ring = try options.choice("ring", default: "split", from: ["split", "packed"])
        json = options.flag("json")
        functions = options.string("vfs") == nil ? nil : try options.int("vfs", default: 1, in: 1...16)
        restarts = options.string("restarts") == nil ? nil : try options.int("restarts", default: 1, in: 1...100)
        guard functions == nil || restarts == nil else { throw UsageError(description: "--vfs and --restarts do not mix") }
    }

    /// One guest's outcome: what it printed, what the back-end reported for its session.
    struct GuestResult {
        let domain: Int
        var exit: ChildProcess.ExitStatus?
        var summary: JSONObject?
        var session: JSONObject?
        var failures: [String] = []
    }

    func run() -> Int32 {
        if let functions { return SharedDeviceDemo(guests: guests, functions: functions, seconds: seconds, json: json).run() }
        if let restarts { return RestartDemo(guests: guests, restarts: restarts, seconds: seconds, ring: ring, json: json).run() }
        guard let directory = try? TemporaryDirectory() else { return failure("cannot create a temporary directory") }
        defer { directory.remove() }
        let socket = directory.path + "/backend.sock"
        let bound = Int32(seconds * 1000) + 30_000
        var backEnd: SpawnedCommand
        do {
            backEnd = try SpawnedCommand(["serve", "--socket", socket, "--device", "checksum", "--sessions", "\(guests)"])
        } catch {
            return failure("cannot start the back-end: \(error)")
        }
        guard backEnd.nextObject(timeoutMilliseconds: 10_000)?.string("event") == "listening" else {
            _ = backEnd.finish(timeoutMilliseconds: 0)
            return failure("the back-end did not start listening")
        }
        var running: [(domain: Int, command: SpawnedCommand)] = []
        for g in 1...guests {
            var arguments = ["guest", "--socket", socket, "--domain", "\(g)", "--seconds", "\(seconds)", "--ring", ring]
            if g == 1 { arguments.append("--bad-handle") }
            do {
                running.append((g, try SpawnedCommand(arguments)))
            } catch {
                return failure("cannot start guest \(g): \(error)")
            }
        }
        var results: [GuestResult] = []
        for (domain, var command) in running {
            var result = GuestResult(domain: domain)
            result.summary = command.nextObject(timeoutMilliseconds: bound)
            result.exit = command.finish(timeoutMilliseconds: 10_000)
            results.append(result)
        }
        // The back-end prints a report per session as it ends, then exits.
        var sessions: [JSONObject] = []
        while sessions.count < guests, let line = backEnd.nextObject(timeoutMilliseconds: 10_000) {
            if line.string("event") == "session" { sessions.append(line) }
        }
        let backEndExit = backEnd.finish(timeoutMilliseconds: 10_000)
        for i in results.indices {
            results[i].session = sessions.first { $0.int("granter") == results[i].domain }
            results[i].failures = check(results[i], presentedBadHandle: results[i].domain == 1)
        }
        var problems = results.flatMap { r in r.failures.map { "guest \(r.domain): \($0)" } }
        if backEndExit != .exited(0) { problems.append("the back-end ended \(backEndExit.map(\.description) ?? "not at all")") }
        report(results, problems: problems)
        return problems.isEmpty ? 0 : 1
    }

    /// Everything that must hold for one guest.
    func check(_ r: GuestResult, presentedBadHandle: Bool) -> [String] {
        var failures: [String] = []
        guard let s = r.summary else { return ["printed no summary (exit \(r.exit.map(\.description) ?? "none"))"] }
        if let error = s.string("error") { failures.append("stopped by an error: \(error)") }
        if r.exit != .exited(0) { failures.append("exited \(r.exit.map(\.description) ?? "not at all")") }
        if s.int("mismatches") != 0 { failures.append("\(s.int("mismatches") ?? -1) replies differed from what was sent") }
        if (s.int("chains") ?? 0) == 0 { failures.append("no request completed") }
        if s.int("grants_made") != s.int("grants_ended") { failures.append("grants made \(s.int("grants_made") ?? -1) but ended \(s.int("grants_ended") ?? -1)") }
        guard let session = r.session else { return failures + ["the back-end reported no session for domain \(r.domain)"] }
        let faults = session.int("faults") ?? -1, broken = session.int("broken_queues") ?? -1
        if presentedBadHandle {
            if s.int("faults_blocked") != 1 { failures.append("the forbidden handle was not refused") }
            if faults < 1 || (session.int("fault_notGranted") ?? 0) < 1 { failures.append("the back-end recorded no notGranted fault") }
            if broken != 1 { failures.append("the back-end did not break the queue (\(broken))") }
        } else if faults != 0 || broken != 0 || s.int("resets") != 0 {
            failures.append("affected by another guest: \(faults) faults, \(broken) broken queues")
        }
        return failures
    }

    func report(_ results: [GuestResult], problems: [String]) {
        if json {
            for r in results {
                var line = JSONLine()
                line.add("guest", r.domain)
                line.add("mb_moved", megabytes(r), decimals: 3)
                line.add("chains", r.summary?.int("chains") ?? 0)
                line.add("grants_made", r.summary?.int("grants_made") ?? 0)
                line.add("grants_ended", r.summary?.int("grants_ended") ?? 0)
                line.add("iotlb_hit_rate", r.session?.number("iotlb_hit_rate") ?? 0, decimals: 4)
                line.add("faults_blocked", r.session?.int("faults") ?? 0)
                line.add("seconds", r.summary?.number("seconds") ?? 0, decimals: 3)
                line.add("ok", r.failures.isEmpty)
                print(line.text)
            }
            print(Self.verdict("multi-process", guests: results.count, problems: problems) { $0.add("ring", ring) })
            return
        }
        print("""
            VirtioGrant demo: a back-end process serving a checksum echo device to \(results.count) guest \
            process\(results.count == 1 ? "" : "es") over vhost-user, grant mode, \(ring) rings, \(JSONLine.format(seconds, decimals: 1)) s each.
            Guest 1 presents a grant handle it never granted halfway through.

            """)
        print("  " + zip(["guest", "MB moved", "chains", "grants made/ended", "IOTLB hit rate", "faults blocked"], widths)
            .map { pad($0, $1) }.joined(separator: "  ") + "  result")
        for r in results {
            let made = r.summary?.int("grants_made") ?? 0, ended = r.summary?.int("grants_ended") ?? 0
            let hitRate = JSONLine.format((r.session?.number("iotlb_hit_rate") ?? 0) * 100, decimals: 2) + "%"
            let cells = ["\(r.domain)", JSONLine.format(megabytes(r), decimals: 1), "\(r.summary?.int("chains") ?? 0)",
                         "\(made)/\(ended)", hitRate, "\(r.session?.int("faults") ?? 0)"]
            print("  " + zip(cells, widths).map { pad($0, $1) }.joined(separator: "  ") + "  " + (r.failures.isEmpty ? "OK" : "FAILED"))
        }
        print("")
        if problems.isEmpty {
            print("""
                Every reply was verified byte for byte. The back-end refused guest 1's ungranted handle \
                (a notGranted fault; its queue broken, DEVICE_NEEDS_RESET signalled); guest 1 reset its \
                device and carried on\(results.count > 1 ? ", and the other guests were not affected" : ""). \
                Every grant was ended. Result: OK
                """)
        } else {
            print("Result: FAILED")
            for p in problems { print("  - \(p)") }
        }
    }

    let widths = [5, 8, 8, 17, 14, 14]

    /// A demo's last JSON line: which demo, its guests, what `fields` add, and the verdict.
    static func verdict(_ demo: String, guests: Int, problems: [String], _ fields: (inout JSONLine) -> Void) -> String {
        var line = JSONLine()
        line.add("demo", demo)
        line.add("guests", guests)
        fields(&line)
        line.add("ok", problems.isEmpty)
        if !problems.isEmpty { line.add("problems", problems.joined(separator: "; ")) }
        return line.text
    }

    func megabytes(_ r: GuestResult) -> Double {
        Double((r.summary?.int("bytes_sent") ?? 0) + (r.summary?.int("bytes_received") ?? 0)) / 1e6
    }

    func pad(_ s: String, _ width: Int) -> String { s.count >= width ? s : s + String(repeating: " ", count: width - s.count) }

    func failure(_ message: String) -> Int32 {
        var e = StandardStream.error
        print("virtio-grant demo: \(message)", to: &e)
        return 1
    }
}
