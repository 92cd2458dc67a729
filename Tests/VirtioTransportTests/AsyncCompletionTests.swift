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
    let kept = Locked<[InFlightRequest]>([])
    /// Requests kept at each ``queueIdle(_:)`` call, as the device saw them.
    let keptAtIdle = Locked<[Int]>([])
    let processThread = Atomic<UInt>(0)
    let serviceThread = Atomic<UInt>(0)
    /// Requests to complete inside `process` instead of keeping them (by index in the batch).
    let completeNow = Locked<Set<Int>>([])
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
