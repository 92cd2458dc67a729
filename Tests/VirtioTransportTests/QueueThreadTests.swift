import Synchronization
import Testing
import VirtioCore
import VirtioDevices
import VirtioSystem
import VirtioTransport

/// A checksum echo device that records the CPUs its queues' threads may run on.
final class AffinityRecordingDevice: VirtioDevice, @unchecked Sendable {
    let deviceID: UInt32 = 0xFFFF
    let deviceFeatures: VirtioFeatures = []
    let queueCount: Int
    let maxQueueSize = 256
    let echo: ChecksumEchoDevice
    let cpus = Locked<Set<[Int]>>([])
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
        let report = try #require(endedReports(backEnd).first)
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
        let failures = Locked<[String]>([])
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
        #expect(endedReports(backEnd, atLeast: 3).map(\.chains) == [600, 600, 600])
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
