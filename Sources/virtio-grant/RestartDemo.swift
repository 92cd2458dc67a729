import VirtioCore
import VirtioSystem
import VirtioWorkloads

/// `virtio-grant demo --restarts N`: the demo with its back-end killed (SIGKILL) and restarted
/// on the same socket N times while the guests stream. The back-end's device completes out of
/// order from a thread of its own (`serve --device checksum-late`), so every kill leaves
/// requests inside it; the guests reconnect (`guest --reconnect`), the restarted back-end
/// resubmits what was in flight from the in-flight region, and each guest verifies every reply
/// byte for byte and that nothing was lost or delivered twice (Spec/restart.md §2). Exits 0
/// only if every check held.
struct RestartDemo {
    let guests: Int
    let restarts: Int
    let seconds: Double
    let ring: String
    let json: Bool

    func run() -> Int32 {
        guard let directory = try? TemporaryDirectory() else { return fail("cannot create a temporary directory") }
        defer { directory.remove() }
        let socket = directory.path + "/backend.sock"
        let serve = ["serve", "--socket", socket, "--device", "checksum-late", "--hold-ms", "20", "--sessions", "\(guests)"]
        guard var backEnd = start(serve) else { return fail("the back-end did not start listening") }
        var running: [(domain: Int, command: SpawnedCommand)] = []
        for g in 1...guests {
            do {
                running.append((g, try SpawnedCommand(["guest", "--socket", socket, "--domain", "\(g)", "--seconds", "\(seconds)",
                                                       "--ring", ring, "--reconnect", "30"])))
            } catch {
                return fail("cannot start guest \(g): \(error)")
            }
        }
        // The kills at even points of the run, counted from the moment every guest is in; each
        // restart waits until the new back-end listens.
        var problems: [String] = []
        problems += awaitGuests(&running, reconnections: 0)
        let interval = seconds / Double(restarts + 1)
        let start = SystemClock.monotonic.seconds
        for k in 1...restarts where problems.isEmpty {
            let wait = start + interval * Double(k) - SystemClock.monotonic.seconds
            if wait > 0 { SystemClock.sleep(milliseconds: Int(wait * 1000)) }
            try? backEnd.process.kill()
            _ = backEnd.finish(timeoutMilliseconds: 5000)
            guard let next = self.start(serve) else {
                problems.append("the back-end did not listen again after kill \(k)")
                break
            }
            backEnd = next
            // The next kill only once every guest is back: each kill is one reconnection.
            problems += awaitGuests(&running, reconnections: k)
        }
        let bound = Int32(seconds * 1000) + 60_000
        var summaries: [(domain: Int, summary: JSONObject?, exit: ChildProcess.ExitStatus?)] = []
        for (domain, var command) in running {
            let summary = command.nextObject(timeoutMilliseconds: bound)
            summaries.append((domain, summary, command.finish(timeoutMilliseconds: 10_000)))
        }
        var sessions = 0
        while sessions < guests, let line = backEnd.nextObject(timeoutMilliseconds: 10_000) {
            if line.string("event") == "session" { sessions += 1 }
        }
        let backEndExit = backEnd.finish(timeoutMilliseconds: 10_000)
        for (domain, summary, exit) in summaries {
            for failure in check(summary, exit) { problems.append("guest \(domain): \(failure)") }
        }
        if sessions != guests { problems.append("the last back-end reported \(sessions) of \(guests) sessions") }
        if backEndExit != .exited(0) { problems.append("the last back-end ended \(backEndExit.map(\.description) ?? "not at all")") }
        report(summaries.map { ($0.domain, $0.summary) }, problems: problems)
        return problems.isEmpty ? 0 : 1
    }

    /// Waits for every guest's line saying it is connected after `reconnections` reconnections.
    private func awaitGuests(_ running: inout [(domain: Int, command: SpawnedCommand)], reconnections: Int) -> [String] {
        var problems: [String] = []
        for i in running.indices {
            let line = running[i].command.nextObject(timeoutMilliseconds: 30_000)
            if line?.string("event") != "connected" || line?.int("reconnections") != reconnections {
                problems.append("guest \(running[i].domain) did not say it was connected after \(reconnections) reconnection(s)")
            }
        }
        return problems
    }

    /// `serve` started, once it listens.
    private func start(_ arguments: [String]) -> SpawnedCommand? {
        guard var command = try? SpawnedCommand(arguments) else { return nil }
        guard command.nextObject(timeoutMilliseconds: 10_000)?.string("event") == "listening" else {
            _ = command.finish(timeoutMilliseconds: 0)
            return nil
        }
        return command
    }

    /// Everything that must hold for one guest: every reply verified, nothing lost (the run
    /// ended with nothing in flight and no error), nothing twice (a second completion of a
    /// request counts as a mismatch), a reconnection per kill, every grant ended.
    private func check(_ s: JSONObject?, _ exit: ChildProcess.ExitStatus?) -> [String] {
        guard let s else { return ["printed no summary (exit \(exit.map(\.description) ?? "none"))"] }
        var failures: [String] = []
        if let error = s.string("error") { failures.append("stopped by an error: \(error)") }
        if exit != .exited(0) { failures.append("exited \(exit.map(\.description) ?? "not at all")") }
        if s.int("mismatches") != 0 { failures.append("\(s.int("mismatches") ?? -1) replies wrong or delivered twice") }
        if (s.int("chains") ?? 0) == 0 { failures.append("no request completed") }
        if s.int("reconnects") != restarts { failures.append("reconnected \(s.int("reconnects") ?? -1) times for \(restarts) kills") }
        if s.int("grants_made") != s.int("grants_ended") { failures.append("grants made \(s.int("grants_made") ?? -1) but ended \(s.int("grants_ended") ?? -1)") }
        return failures
    }

    private func report(_ rows: [(domain: Int, summary: JSONObject?)], problems: [String]) {
        if json {
            for (domain, s) in rows {
                var line = JSONLine()
                line.add("guest", domain)
                line.add("chains", s?.int("chains") ?? 0)
                line.add("mismatches", s?.int("mismatches") ?? -1)
                line.add("reconnects", s?.int("reconnects") ?? 0)
                line.add("seconds", s?.number("seconds") ?? 0, decimals: 3)
                print(line.text)
            }
            print(DemoCommand.verdict("restarts", guests: rows.count, problems: problems) { line in
                line.add("restarts", restarts)
                line.add("ring", ring)
            })
            return
        }
        print("""
            VirtioGrant demo: \(rows.count) guest process\(rows.count == 1 ? "" : "es") streaming through a back-end process \
            whose device completes out of order, \(ring) rings, grant mode, \(JSONLine.format(seconds, decimals: 1)) s; \
            the back-end killed with SIGKILL and restarted on the same socket \(restarts) time\(restarts == 1 ? "" : "s").

            """)
        for (domain, s) in rows {
            print("  guest \(domain): \(s?.int("chains") ?? 0) replies verified, \(s?.int("mismatches") ?? -1) wrong or twice, "
                  + "\(s?.int("reconnects") ?? 0) reconnections")
        }
        print("")
        if problems.isEmpty {
            print("Every reply was verified byte for byte, none was lost and none came twice: each guest reconnected after every kill. Result: OK")
        } else {
            print("Result: FAILED")
            for p in problems { print("  - \(p)") }
        }
    }

    private func fail(_ message: String) -> Int32 {
        var e = StandardStream.error
        print("virtio-grant demo: \(message)", to: &e)
        return 1
    }
}
