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

/// What an operator sees of a back-end by default: each event at its level, through a sink.
@Suite("Embedding: the back-end's log", .tags(.transport))
struct BackEndLogTests {
    /// The levels `log` recorded for `event`.
    static func levels(_ log: CollectingLogSink, _ event: LogEvent) -> [LogLevel] { log.records(of: event).map(\.level) }

    @Test("GHT-EMB-05: logging is on by default, at info, as timestamped lines on stderr; a record below the level is never built")
    func defaults() throws {
        let configuration = BackEndConfiguration()
        #expect(configuration.logSink is StandardErrorLogSink)
        #expect(configuration.logLevel == .info)
        let record = LogRecord(time: WallClockTime(seconds: 1_796_000_000, nanoseconds: 7_000_000), level: .warning, event: .queueHeldBack,
                               session: 3, message: "queue 0 configured but held back")
        #expect(record.description == "2026-11-30T00:53:20.007Z warning session 3: queue 0 configured but held back")
        #expect(WallClockTime.now().seconds > 1_700_000_000)
        #expect(LogLevel.allCases.sorted() == [.debug, .info, .warning, .error])

        // Debug records (each control message) are written only when the level asks for them.
        for level in [LogLevel.info, .debug] {
            let (backEnd, log) = try EmbeddingTests.serve({ ChecksumEchoDevice() }) { $0.logLevel = level }
            defer { backEnd.stop() }
            let c = try RawVhostUserClient(path: backEnd.socketPath)
            try c.negotiate([.replyAck])
            c.close()
            #expect(eventually { backEnd.reports.count == 1 })
            let control = log.records(of: .control).filter { $0.level == .debug }.map(\.message)
            #expect(control == (level == .debug ? ["getFeatures", "setProtocolFeatures", "setOwner"] : []), "\(control)")
            #expect(log.records.allSatisfy { $0.level >= level })
        }
        // A sink of nil is silent; a closure sink gets every record.
        let seen = Mutex<[LogEvent]>([])
        let (quiet, _) = try EmbeddingTests.serve({ ChecksumEchoDevice() }) { $0.logSink = ClosureLogSink { r in seen.withLock { $0.append(r.event) } } }
        defer { quiet.stop() }
        let c = try RawVhostUserClient(path: quiet.socketPath)
        c.close()
        #expect(eventually { seen.withLock { $0 } == [.sessionOpened, .sessionEnded] })
    }

    @Test("GHT-EMB-06: a session opened logs at info, a refused connection at warning, an end at info (the front-end closed) or warning (the back-end closed), with the reason")
    func sessions() throws {
        let (backEnd, log) = try EmbeddingTests.serve({ ChecksumEchoDevice() }) { $0.maxConnections = 1 }
        defer { backEnd.stop() }
        let first = try RawVhostUserClient(path: backEnd.socketPath)
        #expect(eventually { log.records(of: .sessionOpened).count == 1 })
        let second = try RawVhostUserClient(path: backEnd.socketPath)
        #expect(second.isClosedByPeer())
        second.close()
        #expect(Self.levels(log, .sessionRefused) == [.warning])
        #expect(log.records(of: .sessionRefused).first?.message.contains("GHT-LIM-40") == true)
        first.close()
        #expect(eventually { backEnd.reports.count == 1 })
        let broken = try RawVhostUserClient(path: backEnd.socketPath)
        try broken.send(.setVringEndian(VhostUserVringState(index: 0, num: 0)))   // refused: legacy rings
        #expect(broken.isClosedByPeer())
        broken.close()
        #expect(eventually { backEnd.reports.count == 2 })
        #expect(Self.levels(log, .sessionOpened) == [.info, .info])
        #expect(log.records(of: .sessionOpened).map(\.session) == [1, 2])
        let ends = log.records(of: .sessionEnded)
        #expect(ends.map(\.level) == [.info, .warning])
        #expect(ends.map(\.message) == ["ended: disconnected", "ended: closed: setVringEndian before SET_OWNER"], "\(ends.map(\.message))")
    }

    @Test("GHT-EMB-07, GHT-EMB-08: a queue started logs at info, held back at warning, broken at error; the faults at warning when the session ends")
    func queuesAndFaults() throws {
        let (backEnd, log) = try EmbeddingTests.serve { ChecksumEchoDevice() }
        defer { backEnd.stop() }
        // Held back: kicked and enabled with no ring addresses.
        let c = try RawVhostUserClient(path: backEnd.socketPath)
        try c.negotiate([.replyAck, .status])
        try c.shareMemory()
        #expect(try c.ack(.setFeatures([.version1, .vhostUserProtocolFeatures])).isSuccess)
        let kick = try Doorbell()
        #expect(try c.ack(.setVringNum(VhostUserVringState(index: 0, num: 16))).isSuccess)
        #expect(try c.ack(.setVringKick(VhostUserVringFile(index: 0)), fds: [kick.fd.rawValue]).isSuccess)
        #expect(try c.ack(.setVringEnable(VhostUserVringState(index: 0, num: 1))).isSuccess)
        #expect(Self.levels(log, .queueHeldBack) == [.warning])
        c.close()
        #expect(eventually { backEnd.reports.count == 1 })

        // Started, then broken by a handle the front-end never granted: the fault is counted.
        let frontEnd = try FrontEnd.connect(socketPath: backEnd.socketPath)
        #expect(Self.levels(log, .queueStarted) == [.info])
        let queue = frontEnd.queues[0]
        try queue.submit(readable: [BufferSegment(address: frontEnd.forbiddenAddress, length: 512)], writable: [])
        try queue.publish()
        #expect(throws: FrontEndError.self) { _ = try queue.waitForCompletions(timeoutMilliseconds: 3000) }
        #expect(eventually { Self.levels(log, .queueBroken) == [.error] })
        #expect(log.records(of: .queueBroken).first?.message.hasPrefix("queue 0 broke: ") == true)
        frontEnd.close()
        #expect(eventually { backEnd.reports.count == 2 })
        let faults = log.records(of: .fault)
        #expect(faults.map(\.level) == [.warning])
        #expect(faults.first?.message == "translation faults: \(TranslationFault.Kind.notGranted) 1", "\(faults.map(\.message))")
        #expect(faults.first?.session == 2)
    }

    @Test("GHT-EMB-07: QEMU 7.2's rng start logs one start at info; the restart for its new call descriptor is at debug, a stop by GET_VRING_BASE at info")
    func restartsAreNotStarts() throws {
        let (backEnd, log) = try EmbeddingTests.serve({ EntropyDevice() }) { $0.logLevel = .debug }
        defer { backEnd.stop() }
        let c = try RawVhostUserClient(path: backEnd.socketPath)
        defer { c.close() }
        let drivers = try RingStartTests.startLikeQEMU72(c, queues: 1)
        #expect(try drivers[0].1.wait(timeoutMilliseconds: 3000), "the request completes")
        let starts = log.records(of: .queueStarted)
        #expect(starts.map(\.level) == [.info, .debug], "\(starts.map(\.message))")
        #expect(starts.last?.message.hasPrefix("queue 0 restarted with a new descriptor") == true)
        try c.send(.getVringBase(VhostUserVringState(index: 0, num: 0)))
        _ = try c.reply(to: .getVringBase(VhostUserVringState(index: 0, num: 0)))
        #expect(log.records(of: .queueStopped).map(\.level) == [.info])
    }
}
