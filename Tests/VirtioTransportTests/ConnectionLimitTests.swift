import Synchronization
import Testing
@testable import VirtioTransport
import VirtioCore
import VirtioDevices

#if canImport(Glibc)
import Glibc
#endif
import VirtioSystem
import VhostUser

/// Bounds on connections, threads and bookkeeping (Spec/limits.md §3).
@Suite("Connection, thread and bookkeeping limits", .tags(.transport), .serialized)
struct ConnectionLimitTests {
    /// A back-end with `configure` applied, its log collected.
    final class Server {
        let path: String
        let backEnd: BackEnd
        let logged = CollectingLogSink()

        init(_ tag: String, _ configure: (inout BackEndConfiguration) -> Void = { _ in }) throws {
            path = temporarySocketPath(tag)
            var configuration = BackEndConfiguration()
            configuration.logSink = logged
            configure(&configuration)
            backEnd = try BackEnd(socketPath: path, configuration: configuration) { ChecksumEchoDevice(queueCount: 2) }
            backEnd.start()
        }

        deinit { backEnd.stop() }

        func log(containing text: String) -> Bool { logged.records.contains { $0.description.contains(text) } }
    }

    final class Counter: Sendable {
        let value = Atomic<Int>(0)
    }

    /// Whether the back-end answers GET_FEATURES on `client`.
    static func isServed(_ client: RawVhostUserClient) -> Bool {
        guard (try? client.send(.getFeatures)) != nil, case .features = try? client.reply(to: .getFeatures) else { return false }
        return true
    }

    @Test("GHT-LIM-40: a connection beyond maxConnections is closed at once and logged; a slot freed is served again")
    func connectionCap() throws {
        let server = try Server("cap") { $0.maxConnections = 2 }
        let first = try RawVhostUserClient(path: server.path), second = try RawVhostUserClient(path: server.path)
        #expect(Self.isServed(first) && Self.isServed(second))
        let third = try RawVhostUserClient(path: server.path)
        #expect(third.isClosedByPeer(), "the third connection is closed")
        #expect(server.backEnd.refusedConnectionCount == 1)
        #expect(server.log(containing: "connection refused"))
        first.close()
        _ = try TestBackEndReports(server.backEnd).report(1)
        let fourth = try RawVhostUserClient(path: server.path)
        #expect(Self.isServed(fourth), "served once a slot is free")
        withExtendedLifetime(second) {}
    }

    @Test("GHT-LIM-41: when no session thread can be created, that connection is refused and the back-end keeps serving")
    func sessionThreadFailure() throws {
        let failures = Atomic<Int>(1)
        let server = try Server("nothread") { configuration in
            configuration.startThread = { name, body throws(SystemError) in
                if failures.subtract(1, ordering: .relaxed).oldValue > 0 { throw SystemError(errno: EAGAIN, operation: "pthread_create") }
                return try WorkerThread.start(name: name, body)
            }
        }
        let refused = try RawVhostUserClient(path: server.path)
        #expect(refused.isClosedByPeer())
        #expect(server.backEnd.refusedConnectionCount == 1)
        #expect(server.log(containing: "no thread"))
        let next = try RawVhostUserClient(path: server.path)
        #expect(Self.isServed(next))
    }

    @Test("GHT-LIM-41: when a queue's worker thread cannot be created, the session ends with a typed reason and the back-end keeps serving")
    func queueThreadFailure() throws {
        let server = try Server("noqueuethread") { configuration in
            configuration.startThread = { name, body throws(SystemError) in
                if name.hasPrefix("vq") { throw SystemError(errno: EAGAIN, operation: "pthread_create") }
                return try WorkerThread.start(name: name, body)
            }
        }
        let client = try RawVhostUserClient(path: server.path)
        let q = try HandDrivenQueue(client)
        try? q.enable()   // the queue starts here, and cannot
        #expect(client.isClosedByPeer())
        let report = try TestBackEndReports(server.backEnd).report(1)
        guard case .refused(let reason) = report.end else {
            Issue.record("the session ended with \(String(describing: report.end))")
            return
        }
        #expect(reason.contains("queue 0") && reason.contains("pthread_create"), "\(reason)")
        #expect(Self.isServed(try RawVhostUserClient(path: server.path)))
    }

    @Test("GHT-LIM-42: a connection that does not send SET_OWNER within the set-up bound is closed, and the end says why")
    func setupBound() throws {
        let server = try Server("setup") { $0.setupTimeoutMilliseconds = 300 }
        let idle = try RawVhostUserClient(path: server.path)
        #expect(Self.isServed(idle), "requests before SET_OWNER are answered")
        let report = try TestBackEndReports(server.backEnd).report(1)
        #expect(report.end == .timedOut("no SET_OWNER within 300 ms"))
        #expect(idle.isClosedByPeer())
    }

    @Test("GHT-LIM-42: with a queue-start bound, an owned connection that starts no queue in time is closed")
    func queueStartBound() throws {
        let server = try Server("qstart") { $0.queueStartTimeoutMilliseconds = 400 }
        let client = try RawVhostUserClient(path: server.path)
        try client.negotiate([.replyAck])
        let report = try TestBackEndReports(server.backEnd).report(1)
        #expect(report.end == .timedOut("no queue started within 400 ms"))
    }

    @Test("GHT-LIM-43: a connection that stops in the middle of a message is closed after the message bound")
    func midMessageBound() throws {
        let server = try Server("midmsg") { $0.messageTimeoutMilliseconds = 300 }
        let client = try RawVhostUserClient(path: server.path)
        try client.negotiate([.replyAck])
        let header = VhostUserHeader.request(VhostUserRequest.getFeatures.rawValue, payloadSize: 0).encoded()
        try client.channel.send(Array(header.prefix(5)))   // 5 of 12 header bytes, then nothing
        let start = ContinuousClock.now
        let report = try TestBackEndReports(server.backEnd).report(1)
        #expect(ContinuousClock.now - start < .seconds(2))
        #expect(report.end == .timedOut("a message not completed within 300 ms"))
    }

    @Test("GHT-LIM-44: after many connect/close cycles the back-end keeps at most keptReports reports and no other bookkeeping")
    func bookkeepingIsBounded() throws {
        let ended = Counter()
        let server = try Server("churn") { configuration in
            configuration.keptReports = 8
            configuration.onSessionEnd = { _ in ended.value.add(1, ordering: .relaxed) }
        }
        let cycles = 200
        for _ in 0..<cycles {
            let socket = try UnixSocket.connect(path: server.path)
            socket.close()
        }
        for _ in 0..<600 where ended.value.load(ordering: .relaxed) < cycles { usleep(5000) }
        // The last sessions' threads record their reports just after onSessionEnd, and the
        // accept loop joins them when it wakes: on a loaded (or sanitized) run, give it time.
        for _ in 0..<400 where server.backEnd.bookkeepingCount > 8 + 1 || server.backEnd.reports.count < 8 { usleep(5000) }
        let reports = server.backEnd.reports
        #expect(reports.count == 8)
        // The most recently ended (sessions end in any order), sorted by id.
        #expect(Set(reports.map(\.id)).count == 8 && reports.allSatisfy { (1...cycles).contains($0.id) })
        #expect(reports.map(\.id) == reports.map(\.id).sorted())
        #expect(server.backEnd.liveSessionCount == 0)
        #expect(server.backEnd.bookkeepingCount <= 8 + 1, "reports and sessions not yet joined: \(server.backEnd.bookkeepingCount)")
    }
}
