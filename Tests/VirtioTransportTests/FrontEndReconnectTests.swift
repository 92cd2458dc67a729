import Synchronization
import Testing
import VirtioCore
import VirtioDevices
import VirtioGrants
import VirtioSystem
import VirtioTransport
import VhostUser

#if canImport(Glibc)
import Glibc
#endif

/// A back-end in this process that can be replaced by a new one on the same socket path, as a
/// restarted back-end process is: the new one knows nothing of the old one's sessions.
final class RestartableBackEnd {
    let path: String
    let configuration: BackEndConfiguration
    let makeDevice: @Sendable () -> any VirtioDevice
    private(set) var current: BackEnd?
    private(set) var generations = 0

    init(_ tag: String, configuration: BackEndConfiguration = BackEndConfiguration(),
         makeDevice: @escaping @Sendable () -> any VirtioDevice = { ChecksumEchoDevice(queueCount: 2) }) throws {
        path = temporarySocketPath(tag)
        self.configuration = configuration
        self.makeDevice = makeDevice
        try start()
    }

    /// Listens again at the path (after ``stop()``), with `configuration` if given.
    func start(_ configuration: BackEndConfiguration? = nil) throws {
        let backEnd = try BackEnd(socketPath: path, configuration: configuration ?? self.configuration, makeDevice: makeDevice)
        backEnd.start()
        current = backEnd
        generations += 1
    }

    /// Ends every session (their connections reach end of file) and stops listening.
    func stop() {
        current?.stop()
        current = nil
    }

    deinit { stop() }
}

/// Closes `frontEnd` and expects every grant it made to have ended (GHT-RCN-07).
func closeEndingEveryGrant(_ frontEnd: FrontEnd, sourceLocation: SourceLocation = #_sourceLocation) {
    frontEnd.close()
    #expect(frontEnd.grantsEnded == frontEnd.grantsMade, sourceLocation: sourceLocation)
}

/// Expects `body` to throw the ``FrontEndError`` case `matches` accepts (`name` in the message).
func expectError(_ matches: (FrontEndError) -> Bool, _ name: String, sourceLocation: SourceLocation = #_sourceLocation,
                 _ body: () throws -> Void) {
    let error = #expect(throws: FrontEndError.self, sourceLocation: sourceLocation) { try body() }
    if let error, !matches(error) { Issue.record("expected \(name), got \(error)", sourceLocation: sourceLocation) }
}

extension FrontEndConfiguration {
    /// The default configuration with a reconnect policy.
    static func reconnecting(timeLimitMilliseconds: Int32 = 10_000, ring: RingFormat = .split, mode: AddressMode = .grants) -> Self {
        var c = FrontEndConfiguration()
        c.reconnect = FrontEndReconnectPolicy(retryIntervalMilliseconds: 10, timeLimitMilliseconds: timeLimitMilliseconds)
        c.ring = ring
        c.mode = mode
        c.queueCount = 2
        return c
    }
}

@Suite("Front-end reconnection to a restarted back-end", .tags(.transport), .serialized)
struct FrontEndReconnectTests {
    static let variants: [(FrontEndConfiguration.RingFormat, FrontEndConfiguration.AddressMode)] =
        [(.split, .grants), (.packed, .grants), (.split, .guestPhysical), (.packed, .guestPhysical)]

    @Test("GHT-RCN-01, GHT-RCN-03: with a reconnect policy the front-end carries on with a back-end restarted on the same path",
          arguments: variants)
    func carriesOn(ring: FrontEndConfiguration.RingFormat, mode: FrontEndConfiguration.AddressMode) throws {
        let server = try RestartableBackEnd("rcn-on")
        let frontEnd = try FrontEnd.connect(socketPath: server.path, configuration: .reconnecting(ring: ring, mode: mode))
        try EndpointTests.stream(frontEnd, count: 200)
        for round in 1...3 {
            server.stop()
            try server.start()
            try EndpointTests.stream(frontEnd, count: 100, queue: round % 2, seed: UInt64(round))
            #expect(frontEnd.reconnectCount == round)
        }
        #expect(try frontEnd.status() == [.acknowledge, .driver, .featuresOK, .driverOK])
        closeEndingEveryGrant(frontEnd)
    }

    @Test("GHT-RCN-01: without a policy (the default) a back-end's end is the disconnected error, as before")
    func offByDefault() throws {
        #expect(FrontEndConfiguration().reconnect == nil)
        let server = try RestartableBackEnd("rcn-off")
        let frontEnd = try FrontEnd.connect(socketPath: server.path)
        try EndpointTests.stream(frontEnd, count: 20)
        server.stop()
        try server.start()
        let queue = frontEnd.queues[0]
        try queue.submit([1, 2, 3], replyCapacity: 64)
        try queue.publish()
        #expect(throws: FrontEndError.disconnected) { _ = try queue.waitForCompletions() }
        #expect(frontEnd.reconnectCount == 0)
    }

    @Test("GHT-RCN-02: the front-end retries until the back-end listens again, within the policy's time")
    func retriesUntilListening() throws {
        let server = try RestartableBackEnd("rcn-late")
        let frontEnd = try FrontEnd.connect(socketPath: server.path, configuration: .reconnecting())
        try EndpointTests.stream(frontEnd, count: 20)
        server.stop()
        let path = server.path
        let later = Locked<BackEnd?>(nil)
        let starter = WorkerThread(name: "restart") {
            usleep(300_000)
            let b = try? BackEnd(socketPath: path) { ChecksumEchoDevice(queueCount: 2) }
            b?.start()
            later.withLock { $0 = b }
        }
        defer {
            starter.join()
            later.withLock { $0?.stop() }
        }
        let start = ContinuousClock.now
        try EndpointTests.stream(frontEnd, count: 50)
        #expect(ContinuousClock.now - start >= .milliseconds(250), "nothing listened for 300 ms")
        #expect(frontEnd.reconnectCount == 1)
        frontEnd.close()
    }

    @Test("GHT-RCN-02: with no back-end coming back the front-end gives up after the policy's time with a typed error, and stays given up")
    func givesUpInTime() throws {
        let server = try RestartableBackEnd("rcn-gone")
        let frontEnd = try FrontEnd.connect(socketPath: server.path, configuration: .reconnecting(timeLimitMilliseconds: 300))
        try EndpointTests.stream(frontEnd, count: 20)
        server.stop()
        let queue = frontEnd.queues[0]
        let start = ContinuousClock.now
        expectError({ if case .timedOut = $0 { true } else { false } }, "timedOut") { _ = try queue.waitForCompletions(timeoutMilliseconds: 20_000) }
        #expect(ContinuousClock.now - start < .seconds(3))
        #expect(throws: FrontEndError.self) { _ = try frontEnd.status() }
        #expect(throws: FrontEndError.self) { _ = try frontEnd.queues[1].waitForCompletions(timeoutMilliseconds: 100) }
    }

    @Test("GHT-RCN-04: completions the old back-end published and the caller had not taken yet are handed out once after the reconnection",
          arguments: [FrontEndConfiguration.RingFormat.split, .packed])
    func publishedCompletionsOnce(ring: FrontEndConfiguration.RingFormat) throws {
        let server = try RestartableBackEnd("rcn-once")
        let frontEnd = try FrontEnd.connect(socketPath: server.path, configuration: .reconnecting(ring: ring))
        let queue = frontEnd.queues[0]
        var expected: [UInt64: [UInt8]] = [:]
        for k in 0..<16 {
            let bytes = (0..<(100 + k)).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ k) }
            expected[try queue.submit(bytes, replyCapacity: 8 + bytes.count)] = bytes
        }
        try queue.publish()
        // Completed by the back-end (its session's chains) but not taken by this side.
        usleep(200_000)
        server.stop()
        try server.start()
        // The reconnection comes first (through a control request), before the caller takes
        // anything from the ring.
        _ = try frontEnd.readConfig(size: 8)
        #expect(frontEnd.reconnectCount == 1)
        var seen: [UInt64: Int] = [:]
        while seen.count < expected.count {
            for c in try queue.waitForCompletions() {
                seen[c.token, default: 0] += 1
                #expect(c.reply.dropFirst(8).elementsEqual(expected[c.token] ?? []))
            }
        }
        #expect(seen.values.allSatisfy { $0 == 1 } && Set(seen.keys) == Set(expected.keys))
        // Nothing more comes: no request is processed a second time.
        expectError({ if case .timedOut = $0 { true } else { false } }, "timedOut") { _ = try queue.waitForCompletions(timeoutMilliseconds: 200) }
        #expect(frontEnd.reconnectCount == 1)
        try EndpointTests.stream(frontEnd, count: 30)
        closeEndingEveryGrant(frontEnd)
    }

    @Test("GHT-RCN-05: a restarted back-end that no longer offers a feature the device runs with is a typed error")
    func featureLost() throws {
        let server = try RestartableBackEnd("rcn-feat")
        let frontEnd = try FrontEnd.connect(socketPath: server.path, configuration: .reconnecting())
        #expect(frontEnd.features.contains(.eventIndex))
        try EndpointTests.stream(frontEnd, count: 20)
        server.stop()
        var fewer = BackEndConfiguration()
        fewer.transportFeatures.remove(.eventIndex)
        try server.start(fewer)
        let queue = frontEnd.queues[0]
        try queue.submit([1], replyCapacity: 16)
        try queue.publish()
        expectError({ if case .cannotResume = $0 { true } else { false } }, "cannotResume") { _ = try queue.waitForCompletions() }
    }

    @Test("GHT-RCN-06: requests in flight on a back-end that keeps no in-flight region and may complete out of order: a typed error, not silent loss")
    func noInflightRegion() throws {
        var configuration = BackEndConfiguration()
        configuration.tracksInflightRequests = false
        configuration.inFlightDrainTimeoutMilliseconds = 100
        let server = try RestartableBackEnd("rcn-noinf", configuration: configuration) { LateChecksumDevice(queueCount: 2, holdMilliseconds: 60_000) }
        let frontEnd = try FrontEnd.connect(socketPath: server.path, configuration: .reconnecting())
        let queue = frontEnd.queues[0]
        for k in 0..<4 { try queue.submit([UInt8(k)], replyCapacity: 16) }
        try queue.publish()
        usleep(50_000)   // taken into the device, which holds them
        server.stop()
        try server.start()
        expectError({ if case .cannotResume = $0 { true } else { false } }, "cannotResume") { _ = try queue.waitForCompletions() }
        #expect(throws: FrontEndError.self) { _ = try frontEnd.queues[1].waitForCompletions(timeoutMilliseconds: 100) }
    }

    @Test("GHT-RCN-03: two queues driven from two threads while the back-end restarts twice: one reconnection each time, every reply right")
    func queuesOnThreads() throws {
        let server = try RestartableBackEnd("rcn-threads")
        let frontEnd = try FrontEnd.connect(socketPath: server.path, configuration: .reconnecting())
        let outcome = Locked<[String]>([])
        let received = Atomic<Int>(0)
        let threads = (0..<2).map { q in
            WorkerThread(name: "queue\(q)") {
                let queue = frontEnd.queues[q]
                var expected: [UInt64: [UInt8]] = [:]
                var sent = 0, done = 0
                do {
                    while done < 600 {
                        while sent < 600 && queue.freeCount > 0 {
                            let bytes = (0..<(50 + sent % 700)).map { UInt8(truncatingIfNeeded: $0 ^ sent ^ q) }
                            expected[try queue.submit(bytes, replyCapacity: 8 + bytes.count)] = bytes
                            sent += 1
                        }
                        try queue.publish()
                        for c in try queue.waitForCompletions() {
                            guard let bytes = expected.removeValue(forKey: c.token), c.reply.dropFirst(8).elementsEqual(bytes) else {
                                outcome.withLock { $0.append("queue \(q): wrong or repeated reply") }
                                continue
                            }
                            done += 1
                            received.add(1, ordering: .relaxed)
                            usleep(200)   // slow enough for the restarts to land mid-stream
                        }
                    }
                } catch {
                    outcome.withLock { $0.append("queue \(q): \(error)") }
                }
            }
        }
        for restart in 1...2 {
            #expect(eventually(within: 10_000) { received.load(ordering: .relaxed) >= 300 * restart })
            server.stop()
            try server.start()
        }
        for t in threads { t.join() }
        #expect(outcome.withLock { $0 } == [])
        #expect(received.load(ordering: .relaxed) == 1200)
        #expect(frontEnd.reconnectCount == 2)
        closeEndingEveryGrant(frontEnd)
    }

    @Test("GHT-RCN-13: a control request that finds the back-end gone is sent again to the restarted one, after the replay")
    func controlRequestRecovers() throws {
        let server = try RestartableBackEnd("rcn-ctl")
        let frontEnd = try FrontEnd.connect(socketPath: server.path, configuration: .reconnecting())
        let config = try frontEnd.readConfig(size: 8)
        server.stop()
        try server.start()
        #expect(try frontEnd.readConfig(size: 8) == config)
        #expect(frontEnd.reconnectCount == 1)
        #expect(try frontEnd.status() == [.acknowledge, .driver, .featuresOK, .driverOK])
        try EndpointTests.stream(frontEnd, count: 20)
        frontEnd.close()
    }

    @Test("GHT-RCN-02: a back-end that goes away again during the replay is tried again, until one takes over")
    func goneDuringReplay() throws {
        let server = try RestartableBackEnd("rcn-twice")
        let frontEnd = try FrontEnd.connect(socketPath: server.path, configuration: .reconnecting())
        try EndpointTests.stream(frontEnd, count: 20)
        server.stop()
        // A listener that hangs up on the first connection after its first message, then the
        // real back-end.
        let listener = try UnixSocket.listen(path: server.path)
        let path = server.path
        let later = Locked<BackEnd?>(nil)
        let impostor = WorkerThread(name: "impostor") {
            if let connection = try? listener.accept() {
                var byte = [UInt8](repeating: 0, count: 12)
                _ = byte.withUnsafeMutableBytes { try? connection.receive(into: $0) }
                connection.close()
            }
            listener.close()
            let b = try? BackEnd(socketPath: path) { ChecksumEchoDevice(queueCount: 2) }
            b?.start()
            later.withLock { $0 = b }
        }
        defer {
            impostor.join()
            later.withLock { $0?.stop() }
        }
        try EndpointTests.stream(frontEnd, count: 50)
        #expect(frontEnd.reconnectCount == 1)
        closeEndingEveryGrant(frontEnd)
    }

    @Test("GHT-RCN-13: closing a front-end whose back-end went away does not reconnect to the restarted one")
    func closeDoesNotReconnect() throws {
        let server = try RestartableBackEnd("rcn-close")
        let frontEnd = try FrontEnd.connect(socketPath: server.path, configuration: .reconnecting())
        try EndpointTests.stream(frontEnd, count: 10)
        server.stop()
        try server.start()
        frontEnd.close()
        usleep(100_000)
        #expect(frontEnd.reconnectCount == 0)
        #expect(server.current?.liveSessionCount == 0 && server.current?.reports.isEmpty == true, "no session was opened")
    }
}
