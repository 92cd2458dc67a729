import VirtioCore
import VirtioSystem
import VirtioWorkloads

/// `virtio-grant demo --guests M --vfs N`: one back-end process whose echo device has N virtual
/// functions, shared by M guest processes (n:m, deficit round robin). Guest 1 is greedy (its
/// queue always full); the others are polite (one request at a time). Prints what each guest
/// got — requests, its share, its time holding a function, its turns and waits — from the
/// back-end's session reports. Exits 0 only if every guest was served, every reply verified,
/// and nobody was cut off.
struct SharedDeviceDemo {
    let guests: Int
    let functions: Int
    let seconds: Double
    let json: Bool

    struct Row {
        let guest: Int
        var summary: JSONObject?
        var exit: ChildProcess.ExitStatus?
        var session: JSONObject?
    }

    func run() -> Int32 {
        guard let directory = try? TemporaryDirectory() else { return fail("cannot create a temporary directory") }
        defer { directory.remove() }
        let socket = directory.path + "/backend.sock"
        var backEnd: SpawnedCommand
        do {
            backEnd = try SpawnedCommand(["serve", "--socket", socket, "--device", "echo", "--vfs", "\(functions)", "--mapping", "n:m",
                                          "--policy", "drr", "--slice-ms", "2", "--sessions", "\(guests)"])
        } catch {
            return fail("cannot start the back-end: \(error)")
        }
        guard let listening = backEnd.nextObject(timeoutMilliseconds: 10_000), listening.string("event") == "listening" else {
            _ = backEnd.finish(timeoutMilliseconds: 0)
            return fail("the back-end did not start listening")
        }
        var running: [(Int, SpawnedCommand)] = []
        for g in 1...guests {
            let outstanding = g == 1 ? "256" : "1"
            do {
                running.append((g, try SpawnedCommand(["guest", "--socket", socket, "--domain", "\(g)", "--workload", "throughput",
                                                       "--seconds", "\(seconds)", "--outstanding", outstanding, "--payload", "4096"])))
            } catch {
                return fail("cannot start guest \(g): \(error)")
            }
        }
        var rows: [Row] = []
        for (g, var command) in running {
            var row = Row(guest: g)
            row.summary = command.nextObject(timeoutMilliseconds: Int32(seconds * 1000) + 30_000)
            row.exit = command.finish(timeoutMilliseconds: 10_000)
            rows.append(row)
        }
        var sessions: [JSONObject] = []
        while sessions.count < guests, let line = backEnd.nextObject(timeoutMilliseconds: 10_000) {
            if line.string("event") == "session" { sessions.append(line) }
        }
        let backEndExit = backEnd.finish(timeoutMilliseconds: 10_000)
        for i in rows.indices { rows[i].session = sessions.first { $0.int("granter") == rows[i].guest } }
        var problems: [String] = []
        for r in rows {
            if r.exit != .exited(0) || r.summary?.bool("ok") != true { problems.append("guest \(r.guest) failed: \(r.summary?.string("error") ?? "exit \(r.exit.map(\.description) ?? "none")")") }
            if (r.session?.int("sched_requests") ?? 0) == 0 { problems.append("guest \(r.guest) was never served") }
            if r.session?.bool("sched_cut_off") == true { problems.append("guest \(r.guest) was cut off") }
            if (r.session?.int("broken_queues") ?? 1) != 0 { problems.append("guest \(r.guest)'s queue broke") }
        }
        if backEndExit != .exited(0) { problems.append("the back-end ended \(backEndExit.map(\.description) ?? "not at all")") }
        report(rows, problems: problems)
        return problems.isEmpty ? 0 : 1
    }

    func report(_ rows: [Row], problems: [String]) {
        let total = Double(rows.map { $0.session?.int("sched_requests") ?? 0 }.reduce(0, +))
        let held = rows.map { $0.session?.number("sched_hold_ms") ?? 0 }.reduce(0, +)
        if json {
            for r in rows {
                var line = JSONLine()
                line.add("guest", r.guest)
                line.add("role", r.guest == 1 ? "greedy" : "polite")
                line.add("requests", r.session?.int("sched_requests") ?? 0)
                line.add("request_share", Double(r.session?.int("sched_requests") ?? 0) / max(total, 1), decimals: 4)
                line.add("hold_share", (r.session?.number("sched_hold_ms") ?? 0) / max(held, 0.001), decimals: 4)
                line.add("turns", r.session?.int("sched_turns") ?? 0)
                line.add("wait_ms", r.session?.number("sched_wait_ms") ?? 0, decimals: 3)
                line.add("preemptions", r.session?.int("sched_preemptions") ?? 0)
                print(line.text)
            }
            print(DemoCommand.verdict("shared-device", guests: rows.count, problems: problems) { $0.add("vfs", functions) })
            return
        }
        print("""
            VirtioGrant demo: \(rows.count) guest processes share the \(functions) virtual functions of one echo device \
            (n:m, deficit round robin, 2 ms slices) for \(JSONLine.format(seconds, decimals: 1)) s.
            Guest 1 is greedy (256 requests in flight); the others send one request at a time.

            """)
        let widths = [5, 7, 10, 9, 12, 8, 10, 11]
        func pad(_ s: String, _ w: Int) -> String { s.count >= w ? s : s + String(repeating: " ", count: w - s.count) }
        print("  " + zip(["guest", "role", "requests", "share", "hold share", "turns", "wait ms", "preempted"], widths).map(pad).joined(separator: "  "))
        for r in rows {
            let n = r.session?.int("sched_requests") ?? 0
            let cells = ["\(r.guest)", r.guest == 1 ? "greedy" : "polite", "\(n)",
                         JSONLine.format(Double(n) / max(total, 1) * 100, decimals: 1) + "%",
                         JSONLine.format((r.session?.number("sched_hold_ms") ?? 0) / max(held, 0.001) * 100, decimals: 1) + "%",
                         "\(r.session?.int("sched_turns") ?? 0)", JSONLine.format(r.session?.number("sched_wait_ms") ?? 0, decimals: 1),
                         "\(r.session?.int("sched_preemptions") ?? 0)"]
            print("  " + zip(cells, widths).map(pad).joined(separator: "  "))
        }
        print("")
        if problems.isEmpty {
            print("Every guest was served and every reply verified; nobody was cut off. Result: OK")
        } else {
            print("Result: FAILED")
            for p in problems { print("  - \(p)") }
        }
    }

    func fail(_ message: String) -> Int32 {
        var e = StandardStream.error
        print("virtio-grant demo: \(message)", to: &e)
        return 1
    }
}
