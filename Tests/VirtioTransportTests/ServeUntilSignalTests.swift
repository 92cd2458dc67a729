import Synchronization
import Testing
import VirtioCore
import VhostUser
import VirtioDevices
import VirtioSystem
import VirtioTransport

#if canImport(Glibc)
import Glibc
#endif

/// Serving until a signal, in this process: the signal is sent to the whole process (any
/// thread may take it) only once the forwarding handlers are in, which the log says.
@Suite("Embedding: serving until a signal", .tags(.transport), .serialized)
struct ServeUntilSignalTests {
    /// The action of `signal` now, as a comparable number.
    static func action(_ signal: Int32) -> UInt {
        var current = sigaction()
        sigaction(signal, nil, &current)
        return unsafeBitCast(current.__sigaction_handler.sa_handler, to: UInt.self)
    }

    /// Runs `serve` on a thread of its own once the back-ends are made; returns its outcome.
    final class Serving: @unchecked Sendable {
        let outcome = Mutex<Result<ServeOutcome, SystemError>?>(nil)
        var thread: WorkerThread?

        init(_ serve: @escaping @Sendable () throws(SystemError) -> ServeOutcome) {
            thread = WorkerThread(name: "serve") { [self] in
                var result: Result<ServeOutcome, SystemError> = .failure(SystemError(errno: EBUSY, operation: "test"))
                // Another test of the process may hold the one signal forwarder for a moment
                // (the OS layer's tests): wait for it, up to 10 s.
                for _ in 0..<1000 {
                    do throws(SystemError) { result = .success(try serve()) } catch { result = .failure(error) }
                    guard case .failure(let e) = result, e.errno == EBUSY else { break }
                    usleep(10_000)
                }
                self.outcome.withLock { $0 = result }
            }
        }

        func finish() throws -> ServeOutcome {
            thread?.join()
            thread = nil   // the thread's body holds this object: let both go (LeakSanitizer)
            return try #require(outcome.withLock { $0 }).get()
        }
    }

    @Test("GHT-EMB-04: SIGTERM sent to the process ends serve-until-signal: every session ends, the report lists them, the old action is back")
    func sigtermEndsServing() throws {
        let before = Self.action(SIGTERM)
        let (backEnd, log) = try Self.backEnd()
        let serving = Serving { () throws(SystemError) in try backEnd.serveUntilSignal() }
        // Never a SIGTERM without the handlers in: it would end the test process.
        try #require(eventually(within: 12_000) { log.records(of: .serving).count == 1 }, "the handlers are in")
        #expect(Self.action(SIGTERM) != before)
        // One session ends before the signal, one is live when it comes.
        let done = try FrontEnd.connect(socketPath: backEnd.socketPath)
        try EndpointTests.stream(done, count: 10)
        done.close()
        #expect(eventually { backEnd.reports.count == 1 })
        let live = try FrontEnd.connect(socketPath: backEnd.socketPath)
        try EndpointTests.stream(live, count: 20)
        kill(getpid(), SIGTERM)
        let outcome = try serving.finish()
        #expect(outcome.signal == SIGTERM)
        #expect(outcome.reports.map(\.id) == [1, 2])
        #expect(outcome.reports.map(\.chains) == [10, 20])
        #expect(outcome.reports.allSatisfy { $0.end != nil })
        #expect(Self.action(SIGTERM) == before, "the previous action is restored")
        #expect(log.records(of: .serving).last?.message == "stopping (SIGTERM): ending 1 session(s)")
        live.close()
    }

    @Test("GHT-EMB-04: a ServeStop ends serving several back-ends (no signal); a second serve-until-signal at the same time is refused with EBUSY")
    func stopEndsServing() throws {
        let (a, logA) = try Self.backEnd()
        let (b, _) = try Self.backEnd()
        let stop = try ServeStop()
        let ready = Atomic<Bool>(false)
        let serving = Serving { () throws(SystemError) in
            try BackEnd.serveUntilSignal([a, b], signals: [SIGUSR2], stop: stop) { ready.store(true, ordering: .releasing) }
        }
        try #require(eventually(within: 12_000) { ready.load(ordering: .acquiring) })
        #expect(logA.records(of: .serving).first?.message == "serving \(a.socketPath), \(b.socketPath) until SIGUSR2")
        #expect(throws: SystemError(errno: EBUSY, operation: "sigaction: signals are forwarded already")) {
            _ = try a.serveUntilSignal()
        }
        let client = try FrontEnd.connect(socketPath: b.socketPath)
        try EndpointTests.stream(client, count: 5)
        stop.stop()
        let outcome = try serving.finish()
        #expect(outcome.signal == nil)
        #expect(outcome.reports.map(\.chains) == [5])
        #expect(a.liveSessionCount == 0 && b.liveSessionCount == 0)
        client.close()
    }

    static func backEnd() throws -> (BackEnd, CollectingLogSink) {
        let log = CollectingLogSink()
        var configuration = BackEndConfiguration()
        configuration.logSink = log
        return (try BackEnd(socketPath: temporarySocketPath("until"), configuration: configuration) { ChecksumEchoDevice() }, log)
    }
}
