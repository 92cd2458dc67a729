import Synchronization
import Testing
import VirtioCore
import VirtioDevices
import VirtioSystem
import VirtioTransport

#if canImport(Glibc)
import Glibc
#endif

/// A checksum echo device that keeps every request (``RequestBatch/completeLater(_:)``) and
/// answers it when told: from the test's thread, its own answering thread, or the queue's worker
/// when its completion event fires.
final class DeferringDevice: VirtioDevice, @unchecked Sendable {
    let deviceID: UInt32 = 0xFFFF
    let deviceFeatures: VirtioFeatures = []
    let queueCount = 1
    let maxQueueSize = 256
    let kept = Mutex<[InFlightRequest]>([])
    /// Requests kept at each ``queueIdle(_:)`` call, as the device saw them.
    let keptAtIdle = Mutex<[Int]>([])
    let processThread = Atomic<UInt>(0)
    let serviceThread = Atomic<UInt>(0)
    /// Requests to complete inside `process` instead of keeping them (by index in the batch).
    let completeNow = Mutex<Set<Int>>([])
    /// When set, ``completionEvent(queue:)``: ``serviceQueue(_:)`` answers everything kept.
    let event: Doorbell?

    init(event: Doorbell? = nil) { self.event = event }

    func readConfig() -> [UInt8] { [] }
    func reset() {}

    func process(queue: Int, batch: inout RequestBatch) {
        processThread.store(UInt(pthread_self()), ordering: .relaxed)
        let now = completeNow.withLock { $0 }
        for i in 0..<batch.count {
            if now.contains(i) {
                var reader = batch.reader(i)
                let echo = withUnsafeTemporaryAllocation(byteCount: 4096, alignment: 16) {
                    ChecksumEchoDevice.answer(&reader, batch.writer(i), chunk: $0)
                }
                batch.complete(i, with: echo)
            } else {
                let request = batch.completeLater(i)
                kept.withLock { $0.append(request) }
            }
        }
    }

    func queueIdle(_ queue: Int) { keptAtIdle.withLock { $0.append(kept.withLock { $0.count }) } }
    func completionEvent(queue: Int) -> Doorbell? { event }
    func serviceQueue(_ queue: Int) {
        serviceThread.store(UInt(pthread_self()), ordering: .relaxed)
        answer()
    }

    /// Answers the kept requests at the indices `pick` chooses, in its order, on the calling
    /// thread; returns what each completion returned.
    @discardableResult
    func answer(_ pick: ([InFlightRequest]) -> [Int] = { Array($0.indices) }) -> [Bool] {
        let chosen: [InFlightRequest] = kept.withLock { k in
            let indices = pick(k)
            let chosen = indices.map { k[$0] }
            k = k.indices.filter { !indices.contains($0) }.map { k[$0] }
            return chosen
        }
        return chosen.map { Self.answer($0) }
    }

    static func answer(_ request: InFlightRequest) -> Bool {
        var reader = request.reader()
        let echo = withUnsafeTemporaryAllocation(byteCount: 4096, alignment: 16) {
            ChecksumEchoDevice.answer(&reader, request.writer(), chunk: $0)
        }
        return request.complete(with: echo)
    }
}

/// Runs `body` on another thread and waits for it.
func onAnotherThread(_ body: @escaping @Sendable () -> Void) {
    let thread = WorkerThread(name: "other", body)
    thread.join()
}

@Suite("Asynchronous completion at the queue", .tags(.transport))
struct AsyncCompletionTests {
    /// Adds `count` echo requests of distinct lengths (request `i`: 100·(i+1) bytes).
    static func addRequests(_ s: inout QueueProcessorTests.Setup, count: Int) throws {
        for i in 0..<count {
            let payload = Self.payload(i)
            s.region.write(payload, at: UInt64(0x10000 + i * 0x2000))
            try s.driver.add(readable: [BufferSegment(address: UInt64(0x10000 + i * 0x2000), length: UInt32(payload.count))],
                             writable: [BufferSegment(address: UInt64(0x11000 + i * 0x2000), length: 4096)], token: UInt64(i))
        }
        s.driver.publish()
    }

    static func payload(_ i: Int) -> [UInt8] { (0..<(100 * (i + 1))).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ i) } }

    /// Reaps every used chain: its token, after checking its reply.
    static func reap(_ s: inout QueueProcessorTests.Setup) throws -> [UInt64] {
        var tokens: [UInt64] = []
        while let used = try s.driver.reapUsed() {
            let i = Int(used.token)
            let payload = payload(i)
            #expect(Int(used.writtenLength) == 8 + payload.count)
            let reply = s.region.read(at: UInt64(0x11000 + i * 0x2000), count: 8 + payload.count)
            #expect(reply.prefix(8).reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) } == ChecksumEchoDevice.checksum(payload))
            #expect(Array(reply.dropFirst(8)) == payload)
            tokens.append(used.token)
        }
        return tokens
    }

    @Test("GHT-ASY-01: requests the device kept are completed later from another thread, in reverse order, and reach the driver with their own ids, lengths and bytes")
    func keptAndCompletedElsewhere() throws {
        let device = DeferringDevice()
        var s = try QueueProcessorTests.Setup(device: device)
        try Self.addRequests(&s, count: 4)
        #expect(try s.processor.drain().processed == 4)
        #expect(try Self.reap(&s).isEmpty, "nothing is used before the device completes it")
        #expect(s.processor.outstandingCount == 4)
        onAnotherThread { device.answer { Array($0.indices.reversed()) } }
        let r = try s.processor.drain()
        #expect(r.processed == 0 && r.notify)
        #expect(try Self.reap(&s) == [3, 2, 1, 0])
        #expect(s.processor.outstandingCount == 0 && s.processor.queue.inFlightCount == 0)
    }

    @Test("GHT-ASY-02: completions posted before the worker collects them are added and published together, with one notification decision")
    func completionsBatched() throws {
        let device = DeferringDevice()
        var s = try QueueProcessorTests.Setup(device: device)
        try Self.addRequests(&s, count: 6)
        _ = try s.processor.drain()
        onAnotherThread { device.answer() }
        let usedBefore = s.processor.queue.state.nextUsed
        #expect(try s.processor.collectCompletions(), "the driver wants to hear of the six")
        #expect(s.processor.queue.state.nextUsed == usedBefore &+ 6)
        #expect(try s.processor.collectCompletions() == false, "nothing new: no second notification")
        #expect(try Self.reap(&s) == [0, 1, 2, 3, 4, 5])
    }

    @Test("GHT-ASY-03, GHT-ASY-04: a second completion of the same request is refused, and so is one after the queue was reset; neither adds a used entry")
    func lateAndDoubleCompletionsIgnored() throws {
        let device = DeferringDevice()
        var s = try QueueProcessorTests.Setup(device: device)
        try Self.addRequests(&s, count: 2)
        _ = try s.processor.drain()
        let requests = device.kept.withLock { $0 }
        #expect(DeferringDevice.answer(requests[0]))
        #expect(DeferringDevice.answer(requests[0]) == false, "completed already")
        _ = try s.processor.drain()
        #expect(try Self.reap(&s) == [0])
        s.processor.reset()
        #expect(DeferringDevice.answer(requests[1]) == false, "its queue was reset")
        #expect(try s.processor.collectCompletions() == false)
        #expect(s.processor.outstandingCount == 0)
    }

    @Test("GHT-ASY-05: while a request is kept the queue's quiescent point waits, and the memory it points into stays alive until the handle is gone")
    func keptRequestHoldsMemory() throws {
        final class Mapping {}
        let device = DeferringDevice()
        weak var weakMapping: Mapping?
        let quiescent = Atomic<Int>(0)
        do {
            var s = try QueueProcessorTests.Setup(device: device)
            let mapping = Mapping()
            weakMapping = mapping
            var processor = QueueProcessor(queue: try SplitDeviceQueue(queueSize: 16, addresses: SplitRingAddresses(contiguousAt: 0, layout: SplitRingLayout(queueSize: 16)!),
                                                                        memory: s.region.identityTranslator, features: [.version1, .eventIndex], statusCell: s.status),
                                           index: 0, device: device, quiescentPoint: { quiescent.add(1, ordering: .relaxed) }, keepAlive: [mapping])
            try Self.addRequests(&s, count: 1)
            _ = try processor.drain()
            #expect(quiescent.load(ordering: .relaxed) == 0, "a request is inside the device")
            #expect(device.kept.withLock { $0.count } == 1)
            _ = consume processor
        }
        #expect(weakMapping != nil, "the kept request holds the mapping after its queue is gone")
        device.kept.withLock { $0.removeAll() }
        #expect(weakMapping == nil, "released with the last handle")
    }

    @Test("GHT-ASY-05: the quiescent point runs once the last kept request is collected")
    func quiescentAfterCollection() throws {
        let device = DeferringDevice()
        let quiescent = Atomic<Int>(0)
        var s = try QueueProcessorTests.Setup(device: device)
        var processor = QueueProcessor(queue: try SplitDeviceQueue(queueSize: 16, addresses: SplitRingAddresses(contiguousAt: 0, layout: SplitRingLayout(queueSize: 16)!),
                                                                    memory: s.region.identityTranslator, features: [.version1, .eventIndex], statusCell: s.status),
                                       index: 0, device: device, quiescentPoint: { quiescent.add(1, ordering: .relaxed) })
        try Self.addRequests(&s, count: 2)
        _ = try processor.drain()
        #expect(quiescent.load(ordering: .relaxed) == 0)
        device.answer { _ in [0] }
        _ = try processor.collectCompletions()
        #expect(quiescent.load(ordering: .relaxed) == 0, "one is still inside the device")
        device.answer()
        _ = try processor.collectCompletions()
        #expect(quiescent.load(ordering: .relaxed) == 1)
    }

    @Test("GHT-ASY-06: with IN_ORDER, used entries go out in the order the chains were made available, whatever order the device completes them in, requests it completed at once included")
    func inOrderHeldBack() throws {
        let device = DeferringDevice()
        device.completeNow.withLock { $0 = [1] }
        var s = try QueueProcessorTests.Setup(device: device, features: [.version1, .eventIndex, .inOrder])
        try Self.addRequests(&s, count: 4)
        _ = try s.processor.drain()
        #expect(try Self.reap(&s).isEmpty, "request 1 was completed at once, but request 0 comes first")
        onAnotherThread { device.answer { ks in ks.indices.filter { ks[$0].byteCounts.readable != 100 } } }
        _ = try s.processor.drain()
        #expect(try Self.reap(&s).isEmpty, "2 and 3 wait for 0")
        device.answer()
        _ = try s.processor.drain()
        #expect(try Self.reap(&s) == [0, 1, 2, 3])
    }

    @Test("GHT-ASY-09: the device hears its queue is idle only when none of the queue's requests is inside it")
    func idleOnlyWhenNothingKept() throws {
        let device = DeferringDevice()
        var s = try QueueProcessorTests.Setup(device: device)
        try Self.addRequests(&s, count: 3)
        _ = try s.processor.drain()
        #expect(device.keptAtIdle.withLock { $0 }.isEmpty)
        device.answer()
        _ = try s.processor.drain()
        #expect(device.keptAtIdle.withLock { $0 } == [0])
    }

    @Test("GHT-ASY-08: a polling drain leaves the kick suppressed; a sleeping drain enables it again")
    func pollingSuppressesKicks() throws {
        let device = ChecksumEchoDevice()
        var s = try QueueProcessorTests.Setup(device: device)
        s.processor.suppressKicks()
        try Self.addRequests(&s, count: 2)
        let suppressed = s.driver.kickNeeded()
        #expect(suppressed == false, "suppressed while the worker polls")
        _ = try s.processor.drain(polling: true)
        s.processor.suppressKicks()
        try Self.addRequests(&s, count: 1)
        let stillSuppressed = s.driver.kickNeeded()
        #expect(stillSuppressed == false, "still suppressed after a polling drain")
        _ = try s.processor.drain()
        _ = try Self.reap(&s)
        try Self.addRequests(&s, count: 1)
        let wanted = s.driver.kickNeeded()
        #expect(wanted, "a sleeping worker wants the kick")
    }
}

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
            var waited = 0
            while backEnd.reports.isEmpty && waited < 5000 {
                SystemClock.sleep(milliseconds: 1)
                waited += 1
            }
            let report = try #require(backEnd.reports.first)
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

/// A checksum echo device that records the CPUs its queues' threads may run on.
final class AffinityRecordingDevice: VirtioDevice, @unchecked Sendable {
    let deviceID: UInt32 = 0xFFFF
    let deviceFeatures: VirtioFeatures = []
    let queueCount: Int
    let maxQueueSize = 256
    let echo: ChecksumEchoDevice
    let cpus = Mutex<Set<[Int]>>([])
    init(queueCount: Int) {
        self.queueCount = queueCount
        echo = ChecksumEchoDevice(queueCount: queueCount)
    }
    func readConfig() -> [UInt8] { echo.readConfig() }
    func reset() {}
    func process(queue: Int, batch: inout RequestBatch) {
        if let mine = try? WorkerThread.currentThreadCPUs() { cpus.withLock { _ = $0.insert(mine) } }
        echo.process(queue: queue, batch: &batch)
    }
}

@Suite("A busy-polling front-end", .tags(.transport), .serialized)
struct PollingFrontEndTests {
    @Test("GHT-ASY-08: a front-end that polls its used ring (pollCompletions) turns used-buffer notifications off: a polling back-end and client stream with no call signalled")
    func pollingClientWantsNoCalls() throws {
        let path = temporarySocketPath("pollclient")
        var configuration = AsyncBackEndTests.quiet
        configuration.execution = .polling(idleMicroseconds: 5_000_000)
        let backEnd = try BackEnd(socketPath: path, configuration: configuration) { ChecksumEchoDevice() }
        backEnd.start()
        defer { backEnd.stop() }
        let frontEnd = try FrontEnd.connect(socketPath: path)
        let q = frontEnd.queues[0]
        var received = 0
        _ = try q.pollCompletions { _, _ in }
        let deadline = SystemClock.monotonic.nanoseconds + 10_000_000_000
        var sent = 0
        while received < 500 && SystemClock.monotonic.nanoseconds < deadline {
            while sent < 500 && q.freeCount > 0 {
                _ = try q.submit([UInt8](repeating: UInt8(truncatingIfNeeded: sent), count: 100), replyCapacity: 108)
                sent += 1
            }
            try q.publish()
            received += try q.pollCompletions { _, reply in #expect(reply.count == 108) }
        }
        frontEnd.close()
        #expect(received == 500)
        var waited = 0
        while backEnd.reports.isEmpty && waited < 5000 {
            SystemClock.sleep(milliseconds: 1)
            waited += 1
        }
        let report = try #require(backEnd.reports.first)
        #expect(report.chains == 500)
        #expect(report.notifications <= 2, "\(report.notifications) calls signalled to a client that polls")
    }
}

@Suite("Queue threads: shared, pinned", .tags(.transport), .serialized)
struct QueueThreadTests {
    @Test("GHT-ASY-10: one pool thread, sleeping or polling, serves the queues of three sessions at once (two queues each), every reply verified; it carries all six while they run and none after",
          arguments: [QueueExecution.sleeping, .polling(idleMicroseconds: 200)])
    func poolServesManySessions(execution: QueueExecution) throws {
        let pool = try QueueThreadPool(threads: 1, execution: execution)
        var configuration = AsyncBackEndTests.quiet
        configuration.queueThreads = pool
        let path = temporarySocketPath("pool")
        let backEnd = try BackEnd(socketPath: path, configuration: configuration) { ChecksumEchoDevice(queueCount: 2) }
        backEnd.start()
        defer { backEnd.stop() }
        var frontEndConfiguration = FrontEndConfiguration()
        frontEndConfiguration.queueCount = 2
        let frontEnds = try (0..<3).map { _ in try FrontEnd.connect(socketPath: path, configuration: frontEndConfiguration) }
        #expect(pool.queueCounts == [6])
        let failures = Mutex<[String]>([])
        let threads = frontEnds.enumerated().flatMap { k, frontEnd in
            (0..<2).map { q in
                WorkerThread(name: "stream") {
                    do { try EndpointTests.stream(frontEnd, count: 300, queue: q, seed: UInt64(k * 2 + q + 1)) } catch {
                        failures.withLock { $0.append("\(error)") }
                    }
                }
            }
        }
        for t in threads { t.join() }
        #expect(failures.withLock { $0 }.isEmpty)
        for f in frontEnds {
            // The pool thread lets a stopped queue's mappings go at once: the front-end's grant
            // revocation at close is not left waiting for them (REVOKE_GRANTS waits up to 2 s).
            let start = SystemClock.monotonic.nanoseconds
            f.close()
            #expect(SystemClock.monotonic.nanoseconds - start < 1_500_000_000, "close took too long")
            #expect(f.grantsEnded == f.grantsMade)
        }
        var waited = 0
        while backEnd.reports.count < 3 && waited < 5000 {
            SystemClock.sleep(milliseconds: 1)
            waited += 1
        }
        #expect(backEnd.reports.map(\.chains) == [600, 600, 600])
        #expect(pool.queueCounts == [0])
    }

    @Test("GHT-ASY-10: a queue's own thread runs on the CPU the configuration pins it to, and so does a pool's thread")
    func pinnedThreads() throws {
        for usePool in [false, true] {
            var configuration = AsyncBackEndTests.quiet
            if usePool {
                configuration.queueThreads = try QueueThreadPool(threads: 1, cpus: [0])
            } else {
                configuration.workerCPUs = [0]
            }
            let device = AffinityRecordingDevice(queueCount: 1)
            let path = temporarySocketPath("pin")
            let backEnd = try BackEnd(socketPath: path, configuration: configuration) { device }
            backEnd.start()
            defer { backEnd.stop() }
            let frontEnd = try FrontEnd.connect(socketPath: path)
            try EndpointTests.stream(frontEnd, count: 20)
            frontEnd.close()
            #expect(device.cpus.withLock { $0 } == [[0]], "pool: \(usePool)")
        }
    }
}
