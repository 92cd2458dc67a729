import Synchronization
import VirtioCore
import VirtioScheduler
import VirtioSystem

extension SchedulerBenchmark {
    /// Holds the function for `microseconds` of wall time, as a device serving a request would.
    static func serve(microseconds: Int) {
        let end = SystemClock.monotonic.nanoseconds + UInt64(microseconds) * 1000
        while SystemClock.monotonic.nanoseconds < end {}
    }

    /// One guest thread's loop: batches of `batch` requests until `stop`; returns the latencies
    /// (obtain to finish, µs) when `thinkMicroseconds` > 0 (a polite guest), else none.
    static func guestLoop(_ scheduler: DeviceScheduler<OpaqueDeviceModel>, _ guest: DomainID, batch: Int, service: Int,
                          thinkMicroseconds: Int, stop: LoadCounter, served: LoadCounter) -> [Double] {
        var latencies: [Double] = []
        while stop.value == 0 {
            let t0 = SystemClock.monotonic.nanoseconds
            guard let lease = try? scheduler.obtain(guest) else { break }
            _ = try? scheduler.withFunction(lease) { model, _ in
                for _ in 0..<batch {
                    var request = ModelRequest(queue: 0, reader: FragmentReader([], 0..<0), writableBytes: 0)
                    _ = model.start(&request)
                }
            }
            serve(microseconds: service * batch)
            _ = try? scheduler.withFunction(lease) { model, _ in for _ in 0..<batch { model.finish(queue: 0) } }
            guard (try? scheduler.finishBatch(lease, requests: batch, bytes: batch * 4096)) != nil else { break }
            served.add(batch)
            if thinkMicroseconds > 0 {
                latencies.append(Double(SystemClock.monotonic.nanoseconds - t0) / 1000)
                scheduler.release(guest)
                SystemClock.sleep(nanoseconds: UInt64(thinkMicroseconds) * 1000)
            }
        }
        scheduler.release(guest)
        return latencies
    }

    /// Runs guest threads (one per entry of `guests`: weight, batch, think time) on a scheduler
    /// for `seconds`; returns each guest's requests served and latencies.
    func load(functions: Int, mapping: FunctionMapping, policy: SchedulingPolicy,
              guests: [(weight: Int, batch: Int, think: Int)]) throws -> (served: [Int], latencies: [[Double]], decisionNs: Double) {
        let scheduler = try DeviceScheduler<OpaqueDeviceModel>(functionCount: functions, configuration: SchedulerConfiguration(
            policy: policy, mapping: mapping, sliceNanoseconds: 20_000_000, cutOffNanoseconds: 5_000_000_000))
        defer { scheduler.stop() }
        let stop = LoadCounter()
        let counters = guests.map { _ in LoadCounter() }
        let results = Locked<[Int: [Double]]>([:])
        var threads: [WorkerThread] = []
        for (k, g) in guests.enumerated() {
            let id = try scheduler.register(rules: .init(), queueCount: 1, weight: g.weight)
            let service = serviceMicroseconds
            threads.append(WorkerThread(name: "guest\(k)") {
                let latencies = Self.guestLoop(scheduler, id, batch: g.batch, service: service, thinkMicroseconds: g.think,
                                               stop: stop, served: counters[k])
                results.withLock { $0[k] = latencies }
            })
        }
        SystemClock.sleep(nanoseconds: UInt64(seconds * 1e9))
        stop.add(1)
        for t in threads { t.join() }
        let d = scheduler.decisions
        let latencies = results.withLock { r in guests.indices.map { r[$0] ?? [] } }
        return (counters.map(\.value), latencies, Double(d.nanoseconds) / Double(max(d.count, 1)))
    }

    /// GHT-SCH-07: three greedy guests on one function, deficit round robin by requests.
    /// Jain's index over throughput divided by weight: 1.0 when the shares follow the weights.
    func fairness(weights: [Int]) throws {
        let r = try load(functions: 1, mapping: .shared(0), policy: .deficitRoundRobin(unit: .requests, quantum: 32),
                         guests: weights.map { ($0, 8, 0) })
        let normalized = zip(r.served, weights).map { Double($0) / Double($1) }
        let sum = normalized.reduce(0, +)
        let jain = sum * sum / (Double(normalized.count) * normalized.map { $0 * $0 }.reduce(0, +))
        let total = Double(r.served.reduce(0, +))
        let weightSum = Double(weights.reduce(0, +))
        emit("fairness") { l in
            l.add("weights", weights.map(String.init).joined(separator: ":"))
            l.add("jain_index", jain, decimals: 5)
            for (k, n) in r.served.enumerated() {
                l.add("share_\(k + 1)", Double(n) / total, decimals: 4)
                l.add("expected_\(k + 1)", Double(weights[k]) / weightSum, decimals: 4)
            }
            l.add("requests", Int(total))
            l.add("decision_ns", r.decisionNs, decimals: 1)
            l.add("seconds", seconds, decimals: 1)
        }
    }

    /// GHT-SCH-06: two polite guests (one request, then 200 µs of think time) on a pool of two
    /// functions, alone and then with a greedy guest keeping batches of 16 coming.
    func greedyEffect() throws {
        let polite = (weight: 1, batch: 1, think: 200)
        let alone = try load(functions: 2, mapping: .pool, policy: .deficitRoundRobin(unit: .requests, quantum: 32), guests: [polite, polite])
        let shared = try load(functions: 2, mapping: .pool, policy: .deficitRoundRobin(unit: .requests, quantum: 32),
                              guests: [polite, polite, (1, 16, 0)])
        func p99(_ samples: [[Double]]) -> Double {
            let all = samples.flatMap { $0 }.sorted()
            return all.isEmpty ? 0 : all[min(all.count - 1, all.count * 99 / 100)]
        }
        let before = p99(alone.latencies), after = p99(Array(shared.latencies.prefix(2)))
        emit("greedy-guest") { l in
            l.add("functions", 2)
            l.add("polite_p99_us_alone", before, decimals: 1)
            l.add("polite_p99_us_with_greedy", after, decimals: 1)
            l.add("p99_ratio", after / max(before, 0.001), decimals: 2)
            l.add("greedy_requests", shared.served[2])
            l.add("polite_requests", shared.served[0] + shared.served[1])
            l.add("service_us", serviceMicroseconds)
        }
    }
}

/// The CPU clock from /proc/cpuinfo (the first "cpu MHz" line), to express nanoseconds in cycles.
func cpuMegahertz() -> Double {
    guard let text = try? TextFile.read("/proc/cpuinfo") else { return 0 }
    for line in text.split(separator: "\n") where line.hasPrefix("cpu MHz") {
        if let field = line.split(separator: ":").last, let value = Double(String(field.filter { !$0.isWhitespace })) { return value }
    }
    return 0
}

/// A counter guest threads share.
final class LoadCounter: Sendable {
    private let count = Atomic<Int>(0)
    func add(_ n: Int) { count.add(n, ordering: .relaxed) }
    var value: Int { count.load(ordering: .relaxed) }
}
