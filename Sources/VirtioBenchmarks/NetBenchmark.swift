import VirtioCore
import VirtioSystem

/// `virtio-grant bench net`: DPDK's virtio-user (`dpdk-testpmd`) as the front-end, 64-byte
/// frames, against our net back-end (`virtio-grant serve --device net`, one or more builds of
/// it) and against DPDK's own vhost PMD as the reference back-end, in the same run (issue 19).
/// The front-end is pinned to CPU 0, the back-end to CPU 1.
///
/// - txonly: the front-end transmits. DPDK's vhost PMD receives them (rxonly). Our back-end's
///   port is alone on its switch: testpmd sends to 02:00:00:00:00:00, an unknown address, which
///   a switch floods to every other port, here none; the frames are dropped after the
///   switching decision, as a switch with no other port does.
/// - rxonly: the front-end receives. DPDK's vhost PMD generates them (txonly). Our switch gets
///   them either from the switch's traffic source (`serve --net-source 64`, GHT-NET-10: the
///   receive path alone, generated in the receive worker as the vhost PMD generates them; the
///   label gets "+source"), or from a second port: another testpmd, txonly, addressed to the receiving port
///   (`--eth-peer`), on the same socket, pinned to CPU 1 beside the back-end: beside the
///   front-end, two busy-polling processes on one core take turns in scheduler slices and the
///   front-end leaves its ring unfilled for milliseconds at a time (measured: 3-4x fewer
///   frames); the back-end sleeps between bursts and is woken ahead of a busy poller. Its CPU
///   time is the back-end process's only, as for every result.
///
/// Reported per result, one JSON line: packets per second at the front-end (from testpmd's
/// own cumulative counters over the measured seconds, after a warm-up), the back-end process's
/// CPU time over the same interval (/proc/PID/stat, utime + stime, every thread) and packets
/// per back-end CPU-second.
public struct NetBenchmark: Sendable {
    /// Seconds measured, after `warmup` seconds.
    public var seconds: Int
    public var warmup: Int
    public var runs: Int
    /// The virtio-user queue size.
    public var queueSize: Int
    /// "txonly" and/or "rxonly" (the front-end's forwarding mode).
    public var directions: [String]
    /// Our back-ends: a label and the `virtio-grant` executable (A/B of builds in one run),
    /// optionally followed by options for its `serve` ("PATH --poll 50").
    public var binaries: [(label: String, path: String)]
    /// Whether DPDK's vhost PMD is measured too.
    public var reference: Bool
    /// Our back-ends measured rxonly with the switch's traffic source as well (builds that
    /// have `serve --net-source`).
    public var sourceBinaries: [(label: String, path: String)]

    public init(seconds: Int, warmup: Int, runs: Int, queueSize: Int, directions: [String], binaries: [(label: String, path: String)], reference: Bool,
                sourceBinaries: [(label: String, path: String)]) {
        self.sourceBinaries = sourceBinaries
        self.seconds = seconds
        self.warmup = warmup
        self.runs = runs
        self.queueSize = queueSize
        self.directions = directions
        self.binaries = binaries
        self.reference = reference
    }

    /// What one measurement gave.
    struct Sample {
        var packetsPerSecond: Double
        var backEndCPUShare: Double
    }

    /// Prints the JSON lines; 0 when every measurement ran, 1 otherwise (the reason on
    /// standard error, with the directory of the logs kept).
    public func run() -> Int32 {
        guard let directory = try? TemporaryDirectory(prefix: "vg-net") else { return fail("cannot create a temporary directory") }
        var failed = false
        for direction in directions {
            var backEnds = binaries.map { (label: $0.label, path: Optional($0.path)) }
            if direction == "rxonly" { backEnds += sourceBinaries.map { (label: $0.label + "+source", path: Optional($0.path)) } }
            if reference { backEnds.append((label: "dpdk-vhost", path: nil)) }
            for backEnd in backEnds {
                var samples: [Sample] = []
                for run in 0..<runs {
                    let tag = "\(direction)-\(backEnd.label)-\(run)"
                    do throws(BenchmarkError) {
                        samples.append(try measure(direction: direction, binary: backEnd.path, in: directory.path, tag: tag))
                    } catch {
                        failed = true
                        _ = fail("\(tag): \(error.description) (logs in \(directory.path))")
                    }
                }
                guard !samples.isEmpty else { continue }
                let pps = median(samples.map(\.packetsPerSecond)), share = median(samples.map(\.backEndCPUShare))
                var line = JSONLine()
                line.add("workload", "net")
                line.add("direction", direction)
                line.add("backend", backEnd.label)
                line.add("frame_bytes", 64)
                line.add("queue_size", queueSize)
                line.add("frontend_mpps", pps / 1e6, decimals: 3)
                line.add("backend_cpu_share", share, decimals: 3)
                line.add("mpps_per_backend_cpu_s", median(samples.map { $0.packetsPerSecond / max($0.backEndCPUShare, 0.01) }) / 1e6, decimals: 3)
                line.add("seconds", seconds)
                line.add("runs", samples.count)
                print(line.text)
            }
        }
        if !failed { directory.remove() }
        return failed ? 1 : 0
    }

    /// One measurement: the back-end (ours at `binary`, or DPDK's vhost PMD when nil), the
    /// generator if any, the front-end; all stopped at the end.
    func measure(direction: String, binary: String?, in directory: String, tag: String) throws(BenchmarkError) -> Sample {
        let socket = directory + "/\(tag).sock"
        let prefix = "vgnet\(CurrentProcess.id)-\(tag)"
        var started: [NetProcess] = []
        defer { for p in started.reversed() { p.stop() } }
        func start(_ command: [String], cpu: Int, role: String, output: Pipe? = nil) throws(BenchmarkError) -> NetProcess {
            do {
                let p = try NetProcess.start(command, cpu: cpu, log: directory + "/\(tag)-\(role).log", output: output)
                started.append(p)
                return p
            } catch {
                throw BenchmarkError(description: "cannot start \(role): \(error)")
            }
        }
        let backEnd: NetProcess
        if let binary {
            let source = tag.contains("+source") ? ["--net-source", "64"] : []
            // "PATH ARG...": the executable, then options of its serve command (--poll 50).
            let words = binary.split(separator: " ").map(String.init)
            backEnd = try start([words[0], "serve", "--device", "net", "--socket", socket] + source + words.dropFirst(), cpu: 1, role: "backend")
        } else {
            let mode = direction == "txonly" ? "rxonly" : "txonly"
            backEnd = try start(TestPMD.command(cpu: 1, prefix: prefix + "-vhost", vdev: TestPMD.vhost(socket: socket), mode: mode),
                                cpu: 1, role: "backend")
        }
        try waitForFile(socket)
        let pipe: Pipe
        do { pipe = try Pipe() } catch { throw BenchmarkError(description: "cannot create a pipe: \(error)") }
        let frontEnd = try start(TestPMD.command(cpu: 0, prefix: prefix + "-user", vdev: TestPMD.virtioUser(socket: socket, queueSize: queueSize),
                                                 mode: direction), cpu: 0, role: "frontend", output: pipe)
        pipe.writeEnd.close()
        var output = LineReader(pipe.readEnd)
        var counters = PortCounters()
        func nextBlock() throws(BenchmarkError) {
            while true {
                guard let line = try? output.readLine(timeoutMilliseconds: 15_000) else {
                    throw BenchmarkError(description: "the front-end printed no statistics (see \(frontEnd.log))")
                }
                if counters.parse(line) { return }
            }
        }
        try nextBlock()   // connected: the front-end's port is the switch's port 1
        if binary != nil && direction == "rxonly" && !tag.contains("+source") {
            // The generator: a second port, addressed to the front-end's (port 1's default address).
            _ = try start(TestPMD.command(cpu: 1, prefix: prefix + "-gen", vdev: TestPMD.virtioUser(socket: socket, queueSize: queueSize),
                                          mode: "txonly", extra: ["--eth-peer=0,52:54:00:56:00:01"]), cpu: 1, role: "generator")
        }
        for _ in 0..<warmup { try nextBlock() }
        let count = { (c: PortCounters) in Double(direction == "txonly" ? c.transmitted : c.received) }
        let startPackets = count(counters), startTime = SystemClock.monotonic.seconds
        guard let startCPU = backEnd.cpuSeconds else { throw BenchmarkError(description: "the back-end exited (see \(backEnd.log))") }
        for _ in 0..<seconds { try nextBlock() }
        let packets = count(counters) - startPackets, elapsed = SystemClock.monotonic.seconds - startTime
        guard let endCPU = backEnd.cpuSeconds else { throw BenchmarkError(description: "the back-end exited (see \(backEnd.log))") }
        guard packets > 0 else { throw BenchmarkError(description: "no packets went through (see \(frontEnd.log))") }
        return Sample(packetsPerSecond: packets / elapsed, backEndCPUShare: (endCPU - startCPU) / elapsed)
    }

    private func waitForFile(_ path: String) throws(BenchmarkError) {
        for _ in 0..<1000 {
            if TextFile.exists(path) { return }
            SystemClock.sleep(milliseconds: 10)
        }
        throw BenchmarkError(description: "the back-end did not create \(path)")
    }

    func fail(_ message: String) -> Int32 {
        var e = StandardStream.error
        print("virtio-grant bench net: \(message)", to: &e)
        return 1
    }
}
