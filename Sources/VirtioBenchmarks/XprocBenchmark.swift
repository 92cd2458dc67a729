import VirtioSystem
import VirtioCore
import VirtioDevices
import VirtioTransport
import VirtioWorkloads

/// `virtio-grant bench xproc`: the transport across two processes. The back-end (echo device)
/// runs in this process so that its queue worker thread's CPU time can be read; the front-end
/// is a spawned `virtio-grant guest`. One queue, event index on.
///
/// - throughput: the guest keeps the queue full of fixed-size requests for `--seconds`;
///   reported as chains and payload MB per CPU-second of the back-end's worker thread.
/// - latency: the guest sends single requests one at a time; round-trip p50/p99 as the guest
///   measures them (wall clock: a round trip includes two wake-ups).
/// - idle: a front-end in this process connects, streams a few requests and then stays
///   connected doing nothing for `idleSeconds`; the worker's CPU per idle second is what the
///   execution mode costs when there is no work (GHT-ASY-08).
///
/// `execution` chooses how the back-end's worker waits (sleeping on kicks, or polling).
public struct XprocBenchmark: Sendable {
    /// Throughput run length.
    public var seconds: Double
    /// Throughput runs; the median is reported.
    public var runs: Int
    /// Request size.
    public var payload: Int
    /// The queue size (a power of 2), all of it in flight.
    public var queueSize: Int
    /// Latency round trips.
    public var requests: Int
    /// "grants" and/or "gpa".
    public var modes: [String]
    /// How the back-end's queue worker waits for work.
    public var execution: QueueExecution
    /// How long the idle measure stays connected and idle.
    public var idleSeconds: Double
    /// Whether the back-end offers in-flight tracking (INFLIGHT_SHMFD), which the guest then uses.
    public var tracksInflight = true
    /// The guests' ring format (`virtio-grant guest --ring`).
    public var ring = "split"

    public init(seconds: Double, runs: Int, payload: Int, queueSize: Int, requests: Int, modes: [String],
                execution: QueueExecution = .sleeping, idleSeconds: Double = 2) {
        self.execution = execution
        self.idleSeconds = idleSeconds
        self.seconds = seconds
        self.runs = runs
        self.payload = payload
        self.queueSize = queueSize
        self.requests = requests
        self.modes = modes
    }

    /// Prints the JSON lines; 0 when every guest run held its checks, 1 otherwise (the reason
    /// on standard error).
    public func run() -> Int32 {
        guard let directory = try? TemporaryDirectory() else { return fail("cannot create a temporary directory") }
        defer { directory.remove() }
        let socket = directory.path + "/bench.sock"
        let backEnd: BackEnd
        do {
            let size = queueSize
            // Only warnings and errors: a benchmark's output is its JSON lines.
            var configuration = BackEndConfiguration()
            configuration.logLevel = .warning
            configuration.execution = execution
            configuration.tracksInflightRequests = tracksInflight
            backEnd = try BackEnd(socketPath: socket, configuration: configuration) { EchoDevice(queueCount: 1, maxQueueSize: size) }
        } catch {
            return fail("cannot listen: \(error)")
        }
        backEnd.start()
        defer { backEnd.stop() }
        for mode in modes {
            var rates: [(chains: Double, cpu: Double, wall: Double)] = []
            for _ in 0..<runs {
                let before = backEnd.reports.count
                guard let guest = guestRun(["--workload", "throughput", "--seconds", "\(seconds)"], mode: mode, socket: socket),
                      let report = waitForReport(backEnd, after: before) else { return fail("the \(mode) throughput guest failed") }
                rates.append((Double(report.chains), report.workerCPUSeconds, guest.number("seconds") ?? seconds))
            }
            let perCPU = median(rates.map { $0.chains / $0.cpu })
            var line = JSONLine()
            line.add("workload", "xproc")
            line.add("measure", "throughput")
            line.add("mode", mode)
            line.add("execution", executionName)
            line.add("inflight", tracksInflight ? "on" : "off")
            line.add("queue_size", queueSize)
            line.add("payload_bytes", payload)
            line.add("chains_per_backend_cpu_s", perCPU)
            line.add("payload_mb_per_backend_cpu_s", perCPU * Double(payload) / 1e6, decimals: 1)
            line.add("chains_per_wall_s", median(rates.map { $0.chains / $0.wall }))
            line.add("backend_cpu_share", median(rates.map { $0.cpu / $0.wall }), decimals: 3)
            line.add("runs", runs)
            print(line.text)

            let before = backEnd.reports.count
            guard let latency = guestRun(["--workload", "latency", "--requests", "\(requests)"], mode: mode, socket: socket),
                  waitForReport(backEnd, after: before) != nil else { return fail("the \(mode) latency guest failed") }
            var l = JSONLine()
            l.add("workload", "xproc")
            l.add("measure", "latency")
            l.add("mode", mode)
            l.add("execution", executionName)
            l.add("payload_bytes", payload)
            l.add("rtt_p50_us", latency.number("rtt_p50_us") ?? .nan, decimals: 1)
            l.add("rtt_p99_us", latency.number("rtt_p99_us") ?? .nan, decimals: 1)
            l.add("rtt_mean_us", latency.number("rtt_mean_us") ?? .nan, decimals: 1)
            l.add("requests", requests)
            print(l.text)
        }
        return idle(backEnd, socket: socket)
    }

    var executionName: String {
        switch execution {
        case .sleeping: "sleeping"
        case .polling(let us): "polling-\(us)us"
        }
    }

    /// The idle measure: the worker's CPU per second of a connected front-end doing nothing.
    func idle(_ backEnd: BackEnd, socket: String) -> Int32 {
        let before = backEnd.reports.count
        do {
            let frontEnd = try FrontEnd.connect(socketPath: socket)
            let queue = frontEnd.queues[0]
            for _ in 0..<16 { _ = try queue.submit([UInt8](repeating: 1, count: 64), replyCapacity: 64) }
            try queue.publish()
            var done = 0
            while done < 16 { done += try queue.waitForCompletions().count }
            SystemClock.sleep(nanoseconds: UInt64(idleSeconds * 1e9))
            frontEnd.close()
        } catch {
            return fail("idle front-end: \(error)")
        }
        guard let report = waitForReport(backEnd, after: before) else { return fail("the idle session did not end") }
        var line = JSONLine()
        line.add("workload", "xproc")
        line.add("measure", "idle")
        line.add("execution", executionName)
        line.add("idle_seconds", idleSeconds, decimals: 1)
        line.add("worker_cpu_ms_per_idle_s", report.workerCPUSeconds * 1000 / idleSeconds, decimals: 3)
        print(line.text)
        return 0
    }

    /// Runs one guest to completion; its summary if every check held.
    func guestRun(_ arguments: [String], mode: String, socket: String) -> JSONObject? {
        let common = ["guest", "--socket", socket, "--mode", mode, "--payload", "\(payload)",
                      "--queue-size", "\(queueSize)", "--outstanding", "\(queueSize)", "--ring", ring]
        guard var guest = try? SpawnedCommand(common + arguments) else { return nil }
        let summary = guest.nextObject(timeoutMilliseconds: Int32(seconds * 1000) + 60_000)
        guard guest.finish(timeoutMilliseconds: 10_000) == .exited(0), summary?.bool("ok") == true else {
            var e = StandardStream.error
            print("virtio-grant bench xproc: guest: \(summary.map { "\($0.values)" } ?? "no summary")", to: &e)
            return nil
        }
        return summary
    }

    /// The report of the session that started after `count` sessions had ended.
    func waitForReport(_ backEnd: BackEnd, after count: Int) -> SessionReport? {
        for _ in 0..<5000 {
            let reports = backEnd.reports
            if reports.count > count { return reports.last }
            SystemClock.sleep(milliseconds: 1)
        }
        return nil
    }

    func fail(_ message: String) -> Int32 {
        var e = StandardStream.error
        print("virtio-grant bench xproc: \(message)", to: &e)
        return 1
    }
}
