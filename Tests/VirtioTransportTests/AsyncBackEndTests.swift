import Synchronization
import Testing
import VirtioCore
import VirtioDevices
import VirtioSystem
import VirtioTransport

/// A thread that answers whatever a ``DeferringDevice`` kept, newest first, every few hundred
/// microseconds, until stopped.
final class AnsweringThread: @unchecked Sendable {
    private final class Flag: Sendable { let stopping = Atomic<Bool>(false) }
    private let flag = Flag()
    private var thread: WorkerThread?

    init(_ device: DeferringDevice) {
        let flag = self.flag
        thread = WorkerThread(name: "answer") {
            while !flag.stopping.load(ordering: .relaxed) {
                device.answer { Array($0.indices.reversed()) }
                SystemClock.sleep(nanoseconds: 200_000)
            }
        }
    }

    func stop() {
        flag.stopping.store(true, ordering: .relaxed)
        thread?.join()
        thread = nil
    }
}

@Suite("Asynchronous completion through a back-end", .tags(.transport), .serialized)
struct AsyncBackEndTests {
    static var quiet: BackEndConfiguration {
        var c = BackEndConfiguration()
        c.logSink = nil
        return c
    }

    @Test("GHT-ASY-01, GHT-ASY-02: a front-end streams requests that the device answers later from its own thread, out of order; the worker wakes for them and every reply is verified", arguments: [FrontEndConfiguration.RingFormat.split, .packed])
    func streamAnsweredElsewhere(ring: FrontEndConfiguration.RingFormat) throws {
        let path = temporarySocketPath("async")
        let device = DeferringDevice()
        let backEnd = try BackEnd(socketPath: path, configuration: Self.quiet) { device }
        backEnd.start()
        defer { backEnd.stop() }
        let answering = AnsweringThread(device)
        defer { answering.stop() }
        var configuration = FrontEndConfiguration()
        configuration.ring = ring
        let frontEnd = try FrontEnd.connect(socketPath: path, configuration: configuration)
        defer { frontEnd.close() }
        try EndpointTests.stream(frontEnd, count: 600)
    }

    @Test("GHT-ASY-07: the worker watches the device's completion event and calls serviceQueue on its own thread when it fires")
    func completionEventServicedOnWorker() throws {
        let path = temporarySocketPath("async-event")
        let event = try Doorbell()
        let device = DeferringDevice(event: event)
        let backEnd = try BackEnd(socketPath: path, configuration: Self.quiet) { device }
        backEnd.start()
        defer { backEnd.stop() }
        let frontEnd = try FrontEnd.connect(socketPath: path)
        defer { frontEnd.close() }
        let q = frontEnd.queues[0]
        let token = try q.submit([1, 2, 3], replyCapacity: 64)
        try q.publish()
        var waited = 0
        while device.kept.withLock({ $0.count }) == 0 && waited < 5000 {
            SystemClock.sleep(milliseconds: 1)
            waited += 1
        }
        #expect(throws: FrontEndError.self, "kept: nothing completes by itself") { try q.waitForCompletions(timeoutMilliseconds: 100) }
        try event.signal()
        let done = try q.waitForCompletions(timeoutMilliseconds: 5000)
        #expect(done.map(\.token) == [token])
        #expect(device.serviceThread.load(ordering: .relaxed) == device.processThread.load(ordering: .relaxed),
                "serviceQueue ran on the queue's worker thread")
    }

    @Test("GHT-ASY-04: stopping a queue waits for the requests the device kept; one still kept at the drain timeout is abandoned, logged, and its late completion ignored")
    func stopWaitsThenAbandons() throws {
        let path = temporarySocketPath("async-stop")
        let device = DeferringDevice()
        var configuration = Self.quiet
        configuration.inFlightDrainTimeoutMilliseconds = 400
        let log = CollectingLogSink()
        configuration.logSink = log
        configuration.logLevel = .debug
        let backEnd = try BackEnd(socketPath: path, configuration: configuration) { device }
        backEnd.start()
        defer { backEnd.stop() }
        let frontEnd = try FrontEnd.connect(socketPath: path)
        defer { frontEnd.close() }
        let q = frontEnd.queues[0]
        for _ in 0..<2 { _ = try q.submit([7], replyCapacity: 64) }
        try q.publish()
        var waited = 0
        while device.kept.withLock({ $0.count }) < 2 && waited < 5000 {
            SystemClock.sleep(milliseconds: 1)
            waited += 1
        }
        let kept = device.kept.withLock { $0 }
        try #require(kept.count == 2)
        // One is answered 150 ms into the stop; the other never.
        let answerer = WorkerThread(name: "late") {
            SystemClock.sleep(milliseconds: 150)
            _ = DeferringDevice.answer(kept[0])
        }
        let start = SystemClock.monotonic.nanoseconds
        let base = try frontEnd.stopQueue(0)
        let took = Double(SystemClock.monotonic.nanoseconds - start) / 1e6
        answerer.join()
        #expect(base == 2, "both chains were popped")
        let published = try q.waitForCompletions(timeoutMilliseconds: 1000)
        #expect(published.count == 1, "the one answered during the stop was published before the stop returned")
        #expect(took >= 350, "the stop waited for the drain timeout (\(took) ms)")
        #expect(took < 4000)
        #expect(DeferringDevice.answer(kept[1]) == false, "abandoned: its completion is ignored")
        #expect(log.records.contains { $0.message.contains("1 requests still inside the device") }, "\(log.records.map(\.message))")
    }

    @Test("GHT-ASY-08: a polling worker serves a stream with kicks suppressed, and once idle past its budget sleeps: an idle polling queue costs a small fraction of one that never backs off")
    func pollingBacksOff() throws {
        func workerCPU(budgetMicroseconds: Int) throws -> (cpu: Double, kicks: UInt64, chains: UInt64) {
            let path = temporarySocketPath("poll")
            var configuration = Self.quiet
            configuration.execution = .polling(idleMicroseconds: budgetMicroseconds)
            let backEnd = try BackEnd(socketPath: path, configuration: configuration) { ChecksumEchoDevice() }
            backEnd.start()
            defer { backEnd.stop() }
            let frontEnd = try FrontEnd.connect(socketPath: path)
            try EndpointTests.stream(frontEnd, count: 300)
            SystemClock.sleep(milliseconds: 600)
            frontEnd.close()
            let report = try #require(endedReports(backEnd).first)
            return (report.workerCPUSeconds, report.kicks, report.chains)
        }
        let backingOff = try workerCPU(budgetMicroseconds: 200)
        let spinning = try workerCPU(budgetMicroseconds: 30_000_000)
        #expect(backingOff.chains == 300 && spinning.chains == 300)
        #expect(spinning.cpu > 0.15, "a worker that never backs off spins through the idle 600 ms (\(spinning.cpu) s)")
        #expect(backingOff.cpu < spinning.cpu / 3, "backing off: \(backingOff.cpu) s, spinning: \(spinning.cpu) s")
        #expect(spinning.kicks < 300, "polling, the driver is asked not to kick (\(spinning.kicks) kicks for 300 chains)")
    }
}

/// The reports of `backEnd`'s ended sessions once there are at least `count` (or after 5 s).
func endedReports(_ backEnd: BackEnd, atLeast count: Int = 1) -> [SessionReport] {
    var waited = 0
    while backEnd.reports.count < count && waited < 5000 {
        SystemClock.sleep(milliseconds: 1)
        waited += 1
    }
    return backEnd.reports
}
