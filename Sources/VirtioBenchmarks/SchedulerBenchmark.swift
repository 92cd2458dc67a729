import Synchronization
import VirtioSystem
import VirtioCore
import VirtioDevices
import VirtioScheduler

/// `virtio-grant bench sched`: the scheduler's costs and what it promises, one JSON line each:
/// a device-model update (ns, and cycles at the CPU's clock), the uncontended obtain/finish
/// path and a scheduling decision (ns), a context switch (µs), Jain's fairness index with
/// equal weights and with 1:2:4 (and the shares), and the latency p99 of two polite guests
/// without and with a greedy one. Costs are per CPU-second of the measuring thread; shares
/// and latencies come from guest threads against a function whose requests take `--service-us`.
public struct SchedulerBenchmark: Sendable {
    /// CPU-seconds per cost measurement (at most 1) and wall seconds per load run.
    public var seconds: Double
    public var runs: Int
    /// How long a request holds the function in the load runs.
    public var serviceMicroseconds: Int

    public init(seconds: Double, runs: Int, serviceMicroseconds: Int) {
        self.seconds = seconds
        self.runs = runs
        self.serviceMicroseconds = serviceMicroseconds
    }

    func emit(_ operation: String, _ fields: (inout JSONLine) -> Void) {
        var l = JSONLine()
        l.add("workload", "sched")
        l.add("operation", operation)
        fields(&l)
        StandardStream.output.writeLine(l.text)
    }

    /// Median CPU nanoseconds per operation of `body` (which performs `ops` operations).
    func nanoseconds(ops: Int, _ body: () -> Void) -> Double {
        1e9 / medianRate(seconds: min(seconds, 1), runs: runs, opsPerCall: ops, body)
    }

    /// Prints the JSON lines; 0, or 1 after an `error` line if the scheduler refused a step.
    public func run() -> Int32 {
        do {
            modelUpdate()
            try fastPath()
            contextSwitch()
            for weights in [[1, 1, 1], [1, 2, 4]] { try fairness(weights: weights) }
            try greedyEffect()
            return 0
        } catch {
            emit("error") { $0.add("error", "\(error)") }
            return 1
        }
    }

    /// GHT-MDL-05: one blk request through the model (start and finish) on a function.
    func modelUpdate() {
        let memory = GuestMemoryRegion(size: 4096)
        memory.write(BlockRequestHeader(type: .write, sector: 64).bytes, at: 0)
        let fragments = [memory.range.slice(offset: 0, length: 16 + 512), memory.range.slice(offset: 1024, length: 1)]
        var model = BlockDeviceModel()
        model.load(BlockDeviceModel.Rules(sectors: 0..<4096))
        var allowed = 0
        let ns = nanoseconds(ops: 1024) {
            for _ in 0..<1024 {
                var request = ModelRequest(queue: 0, reader: FragmentReader(fragments, 0..<1), writableBytes: 1)
                if model.start(&request).isAllowed { allowed &+= 1 }
                model.finish(queue: 0)
            }
        }
        precondition(allowed > 0 && model.isReusable)
        emit("model-update") { l in
            l.add("model", "blk")
            l.add("ns_per_update", ns, decimals: 1)
            l.add("cycles_per_update", ns * cpuMegahertz() / 1000, decimals: 0)
            l.add("cpu_mhz", cpuMegahertz(), decimals: 0)
        }
    }

    /// The uncontended path of a batch: obtain, the model's start and finish, finishBatch;
    /// and the decision the scheduler takes at a release.
    func fastPath() throws {
        let scheduler = try DeviceScheduler<OpaqueDeviceModel>(functionCount: 1)
        defer { scheduler.stop() }
        let guest = try scheduler.register(rules: .init(), queueCount: 1)
        let perBatch = nanoseconds(ops: 256) {
            for _ in 0..<256 {
                let lease = try! scheduler.obtain(guest)
                try! scheduler.withFunction(lease) { model, _ in
                    var request = ModelRequest(queue: 0, reader: FragmentReader([], 0..<0), writableBytes: 0)
                    _ = model.start(&request)
                }
                try! scheduler.withFunction(lease) { model, _ in model.finish(queue: 0) }
                try! scheduler.finishBatch(lease, requests: 1, bytes: 0)
            }
        }
        let before = scheduler.decisions
        let perRelease = nanoseconds(ops: 256) {
            for _ in 0..<256 {
                let lease = try! scheduler.obtain(guest)
                try! scheduler.finishBatch(lease, requests: 1, bytes: 0)
                scheduler.release(guest)
            }
        }
        let after = scheduler.decisions
        emit("obtain-finish") { l in
            l.add("ns_per_batch", perBatch, decimals: 1)
            l.add("ns_per_turn", perRelease, decimals: 1)
            l.add("decision_ns", Double(after.nanoseconds - before.nanoseconds) / Double(max(after.count - before.count, 1)), decimals: 1)
        }
    }

    /// GHT-SCH-05: save one guest's context and restore another's on a function.
    func contextSwitch() {
        let a = GuestContext(guest: DomainID(1), features: [.version1], queueCount: 4, rules: BlockDeviceModel.Rules(sectors: 0..<1024))
        let b = GuestContext(guest: DomainID(2), features: [.version1], queueCount: 4, rules: BlockDeviceModel.Rules(sectors: 1024..<2048))
        var saved = 0
        let ns = nanoseconds(ops: 1024) { saved &+= VirtualFunction<BlockDeviceModel>.measureContextSwitch(a, b, rounds: 1024) }
        precondition(saved > 0)
        emit("context-switch") { l in
            l.add("model", "blk")
            l.add("us_per_switch", ns / 1000, decimals: 4)
        }
    }
}
