import VirtioSystem
import Synchronization
import VirtioSystem
import VirtioCore
import VirtioTransport
@testable import VirtioScheduler

/// A scheduler over the opaque model (it counts requests in flight and checks nothing else).
func opaqueScheduler(functions: Int = 1, mapping: FunctionMapping = .shared(0), policy: SchedulingPolicy = .roundRobin,
                     sliceMilliseconds: Double, cutOffMilliseconds: Double) throws -> DeviceScheduler<OpaqueDeviceModel> {
    try DeviceScheduler(functionCount: functions, configuration: configuration(
        mapping: mapping, policy: policy, sliceMilliseconds: sliceMilliseconds, cutOffMilliseconds: cutOffMilliseconds))
}

func configuration(mapping: FunctionMapping = .shared(0), policy: SchedulingPolicy = .roundRobin,
                   sliceMilliseconds: Double, cutOffMilliseconds: Double) -> SchedulerConfiguration {
    SchedulerConfiguration(policy: policy, mapping: mapping, sliceNanoseconds: UInt64(sliceMilliseconds * 1e6),
                           cutOffNanoseconds: UInt64(cutOffMilliseconds * 1e6))
}

/// An ``DeviceScheduler/obtain(_:)`` running on a thread of its own, so that the test can watch
/// it wait (and fail, not hang, if it never returns).
final class PendingObtain<Model: DeviceModel>: Sendable {
    let started: UInt64
    private let outcome = Shared<(result: Result<FunctionLease, SchedulerError>, at: UInt64)?>(nil)
    private let thread: TestThread

    /// `then` runs on the obtaining thread right after a successful obtain, before anyone else
    /// could take the function (the guest holds it).
    init(_ scheduler: DeviceScheduler<Model>, _ guest: DomainID, then: @escaping @Sendable (FunctionLease) -> Void = { _ in }) {
        started = SystemClock.monotonic.nanoseconds
        let outcome = outcome
        thread = TestThread {
            let result = Result<FunctionLease, SchedulerError> { () throws(SchedulerError) in try scheduler.obtain(guest) }
            let at = SystemClock.monotonic.nanoseconds
            if case .success(let lease) = result { then(lease) }
            outcome.update { $0 = (result, at) }
        }
    }

    /// Whether obtain returned (with a lease or an error).
    var isDone: Bool { outcome.value != nil }

    /// The outcome, waiting up to `seconds`; `nil` if obtain did not return in time.
    func wait(seconds: Double) -> Result<FunctionLease, SchedulerError>? {
        guard thread.join(timeout: seconds) else { return nil }
        return outcome.value?.result
    }

    /// When obtain returned.
    var returnedAt: UInt64? { outcome.value?.at }

    /// Seconds from the start of obtain to its return.
    var elapsed: Double? { outcome.value.map { Double($0.at &- started) / 1e9 } }
}

/// Greedy guests on threads of their own: each loops `body` until told to stop.
final class GreedyGuests: Sendable {
    private let stopping = Shared(false)
    private let failures = Shared<[String]>([])
    private let threads: [TestThread]

    /// Starts one thread per guest; `body` is one iteration (obtain ... finishBatch).
    init(_ guests: [DomainID], _ body: @escaping @Sendable (Int, DomainID) throws -> Void) {
        var threads: [TestThread] = []
        for (k, guest) in guests.enumerated() {
            let stopping = stopping, failures = failures
            threads.append(TestThread {
                while !stopping.value {
                    do {
                        try body(k, guest)
                    } catch {
                        failures.update { $0.append("\(guest): \(error)") }
                        return
                    }
                }
            })
        }
        self.threads = threads
    }

    /// Tells every guest to stop and waits for them (each releases its function as it leaves,
    /// so that the others' obtains return).
    func stop<M: DeviceModel>(releasingOn scheduler: DeviceScheduler<M>, _ guests: [DomainID]) -> Bool {
        stopping.store(true)
        let deadline = SystemClock.monotonic.nanoseconds &+ 5_000_000_000
        var joined = Array(repeating: false, count: threads.count)
        while SystemClock.monotonic.nanoseconds < deadline && joined.contains(false) {
            for g in guests { scheduler.release(g) }
            for (k, t) in threads.enumerated() where !joined[k] { joined[k] = t.join(timeout: 0.01) }
        }
        return !joined.contains(false)
    }

    var errors: [String] { failures.value }
}

extension Array where Element == UInt64 {
    /// Each element's share of the total.
    var shares: [Double] {
        let total = Double(reduce(0, +))
        return map { total == 0 ? 0 : Double($0) / total }
    }
}

/// Whether every share lies within `tolerance` (relative) of its expected share.
func within(_ shares: [Double], of expected: [Double], tolerance: Double) -> Bool {
    zip(shares, expected).allSatisfy { abs($0 - $1) <= tolerance * $1 }
}
