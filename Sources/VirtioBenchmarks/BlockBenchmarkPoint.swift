import VirtioCore
import VirtioSystem
import VirtioTransport

/// What one point measured.
struct BlockPointResult {
    /// Requests completed in the measured interval, on every queue.
    var completed = 0
    var wallSeconds = 0.0
    /// CPU seconds of the whole back-end process and of this process in the interval.
    var backEndCPU = 0.0
    var generatorCPU = 0.0
    /// Round-trip latencies of the interval, sorted, in nanoseconds.
    var latencies: [UInt64] = []
    var errors = 0
    var failure: String?

    var ok: Bool { failure == nil && errors == 0 && completed > 0 }
    var iops: Double { Double(completed) / wallSeconds }
}

/// One point of the matrix: an operation at a depth with a client style, one thread per queue.
struct BlockPoint {
    let benchmark: BlockBenchmark
    let operation: BlockBenchmark.Operation
    let depth: Int
    let client: BlockBenchmark.Client
    let diskBlocks: UInt64

    /// Warms up, measures `seconds`, stops the queue threads and waits for them.
    func run(_ frontEnd: FrontEnd, backEndPID: Int32) -> BlockPointResult {
        let phase = LoadPhase()
        let loads = frontEnd.queues.map {
            QueueLoad(queue: $0, operation: operation, client: client, depth: depth, blocks: diskBlocks, phase: phase,
                      seed: SystemClock.monotonic.nanoseconds &+ UInt64($0.index) &* 0x9E37_79B9)
        }
        let threads = loads.map { load in WorkerThread(name: "blk-load") { load.run() } }
        SystemClock.sleep(nanoseconds: UInt64(benchmark.warmUp * 1e9))
        let me = CurrentProcess.id
        func sample() -> (time: Double, completed: Int, backEnd: Double?, generator: Double?) {
            (SystemClock.monotonic.seconds, loads.reduce(0) { $0 + $1.completed.load(ordering: .relaxed) },
             ProcessCPU.seconds(pid: backEndPID), ProcessCPU.seconds(pid: me))
        }
        phase.set(LoadPhase.measure)
        let start = sample()
        SystemClock.sleep(nanoseconds: UInt64(benchmark.seconds * 1e9))
        let end = sample()
        phase.set(LoadPhase.stop)
        for thread in threads { thread.join() }

        var result = BlockPointResult()
        result.completed = end.completed - start.completed
        result.wallSeconds = end.time - start.time
        if let a = start.backEnd, let b = end.backEnd { result.backEndCPU = b - a } else { result.failure = "the back-end process is gone" }
        if let a = start.generator, let b = end.generator { result.generatorCPU = b - a }
        result.latencies = loads.flatMap(\.latencies).sorted()
        result.errors = loads.reduce(0) { $0 + $1.errors }
        result.failure = result.failure ?? loads.compactMap(\.failure).first
        return result
    }

    /// The point's fields (after the back-end's), and its figures when it ran.
    func describe(_ result: BlockPointResult?, into line: inout JSONLine) {
        line.add("measure", operation.rawValue)
        line.add("block_bytes", BlockBenchmark.blockBytes)
        line.add("depth", depth)
        line.add("client", client.rawValue)
        guard let result else { return line.add("ok", false) }
        line.add("ok", result.ok)
        line.add("iops", result.iops)
        let p50 = percentile(result.latencies, 50).map { Double($0) / 1000 } ?? .nan
        let p99 = percentile(result.latencies, 99).map { Double($0) / 1000 } ?? .nan
        line.add("lat_p50_us", p50, decimals: 1)
        line.add("lat_p99_us", p99, decimals: 1)
        line.add("backend_cpu_s", result.backEndCPU, decimals: 2)
        line.add("iops_per_backend_cpu_s", Double(result.completed) / result.backEndCPU)
        line.add("generator_cpu_s", result.generatorCPU, decimals: 2)
        line.add("iops_per_generator_cpu_s", Double(result.completed) / result.generatorCPU)
        line.add("seconds", result.wallSeconds, decimals: 3)
        line.add("requests", result.completed)
        line.add("errors", result.errors)
        if let failure = result.failure { line.add("error", failure) }
    }
}
