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

/// Liveness against a stalling peer (Spec/hostile-peers.md §3): no wait on a peer is unbounded,
/// none holds what the data path needs, and a dead descriptor does not make a thread spin.
@Suite("Liveness against a stalling peer", .tags(.transport), .serialized)
struct LivenessTests {
    /// A connected socket whose send buffer is already full: whatever is sent on it next waits
    /// for a reader that never comes (the peer end is returned, to be kept open and never read).
    static func fullSocket() throws -> (full: UnixSocket, peer: UnixSocket) {
        let (full, peer) = try UnixSocket.pair()
        let chunk = [UInt8](repeating: 0x55, count: 4096)
        while (try? full.send(chunk, timeoutMilliseconds: 0)) != nil {}
        return (full, peer)
    }

    @Test("GHT-LIVE-01: a front-end that never reads the back-end channel does not wedge the queue worker; the message is dropped, counted and the channel closed")
    func stalledBackEndChannel() throws {
        let server = try TestBackEnd("stalled-backend")
        let client = try RawVhostUserClient(path: server.path)
        var q = try HandDrivenQueue(client)
        let (full, peer) = try Self.fullSocket()
        #expect(try client.ack(.setBackEndRequestFD, fds: [full.fd.rawValue]).isSuccess)
        full.close()
        try q.driverOK()
        try q.post(2, readable: [BufferSegment(address: UInt64(client.pool.size) + 0x10000, length: 16)])   // breaks the queue
        #expect(try q.err.wait(timeoutMilliseconds: 3000), "the queue broke")
        client.close()
        // Before the rule, the worker sat in a blocking send of CONFIG_CHANGE, so stopping the
        // queue at the end of the session never returned: no report.
        let report = try server.report(1)
        #expect(report.end == .disconnected)
        #expect(report.backendMessagesDropped >= 1)
        withExtendedLifetime(peer) {}
    }

    @Test("GHT-LIVE-02: a front-end that does not read its replies ends its session after the reply timeout")
    func unreadReplies() throws {
        let path = temporarySocketPath("unread")
        var configuration = BackEndConfiguration()
        configuration.replyTimeoutMilliseconds = 300
        let backEnd = try BackEnd(socketPath: path, configuration: configuration) { ChecksumEchoDevice() }
        backEnd.start()
        defer { backEnd.stop() }
        let client = try RawVhostUserClient(path: path)
        // Requests that each get a reply, never read: the replies fill both socket buffers.
        let request = try VhostUserCodec.encode(.getFeatures)
        for _ in 0..<4000 {
            guard (try? client.channel.send(request, timeoutMilliseconds: 2000)) != nil else { break }
        }
        let report = try TestBackEndReports(backEnd).report(1)
        guard case .timedOut(let reason) = report.end else {
            Issue.record("the session ended with \(String(describing: report.end))")
            return
        }
        #expect(reason.contains("reply"))
        withExtendedLifetime(client) {}
    }

    @Test("GHT-LIVE-03: `serve` stops on SIGTERM even while a front-end holds its back-end channel full and never reads it")
    func serveStopsWithWedgedPeer() throws {
        let (program, path) = try ProgramUnderTest.serve()
        let client = try RawVhostUserClient(path: path)
        var q = try HandDrivenQueue(client)
        let (full, peer) = try Self.fullSocket()
        #expect(try client.ack(.setBackEndRequestFD, fds: [full.fd.rawValue]).isSuccess)
        full.close()
        try q.driverOK()
        try q.post(2, readable: [BufferSegment(address: UInt64(client.pool.size) + 0x10000, length: 16)])
        #expect(try q.err.wait(timeoutMilliseconds: 3000), "the queue broke")
        client.close()
        try program.process.kill(SIGTERM)
        let status = try program.finish(timeoutMilliseconds: 5000)
        #expect(status == .exited(0), "serve ended by itself on SIGTERM (not killed after the timeout)")
        withExtendedLifetime(peer) {}
    }

    @Test("GHT-LIVE-04: out of descriptors, serve's accept loop pauses instead of spinning, and serves again once descriptors are free")
    func acceptBacksOff() throws {
        let path = temporarySocketPath("emfile")
        let binary = try ChildProcess.executableDirectory + "/virtio-grant"
        let pipe = try Pipe()
        // Few descriptors: the listener, epoll, eventfds and a handful of connections.
        let process = try ChildProcess.spawn(path: "/bin/sh", arguments: ["-c", "ulimit -n 14 && exec \"$0\" serve --socket \"$1\"", binary, path],
                                             fileDescriptors: [(child: 1, parent: pipe.writeEnd)])
        pipe.writeEnd.close()
        var output = LineReader(pipe.readEnd)
        defer {
            try? process.kill()
            _ = try? process.wait(timeoutMilliseconds: 5000)
        }
        while !(try output.readLine(timeoutMilliseconds: 15_000)).contains("listening") {}
        var clients: [UnixSocket] = []
        for _ in 0..<16 { clients.append(try UnixSocket.connect(path: path)) }   // more than the process can accept
        usleep(300_000)
        let before = try Self.cpuNanoseconds(of: process.pid)
        usleep(1_000_000)
        let spent = try Self.cpuNanoseconds(of: process.pid) - before
        #expect(spent < 250_000_000, "the process used \(Double(spent) / 1e6) ms of CPU in 1 s while out of descriptors")
        clients.forEach { $0.close() }
        // Served again: a new connection gets an answer within the longest pause.
        usleep(200_000)
        let client = try RawVhostUserClient(path: path)
        try client.send(.getFeatures)
        guard case .features = try client.reply(to: .getFeatures) else {
            Issue.record("no GET_FEATURES reply")
            return
        }
    }

    /// User and system CPU time of process `pid` (/proc/PID/stat fields 14 and 15), in ns.
    static func cpuNanoseconds(of pid: pid_t) throws -> UInt64 {
        let text = try TextFile.read("/proc/\(pid)/stat")
        let fields = text[text.lastIndex(of: ")")!...].split(separator: " ")
        let ticks = UInt64(fields[12])! + UInt64(fields[13])!
        return ticks * 1_000_000_000 / UInt64(sysconf(Int32(_SC_CLK_TCK)))
    }

    @Test("GHT-LIVE-05: a kick descriptor that is not an eventfd (a pipe whose writer closed) ends the session at SET_VRING_KICK; no worker spins on it")
    func pipeKickRefused() throws {
        let server = try TestBackEnd("pipekick")
        let client = try RawVhostUserClient(path: server.path)
        try client.negotiate([.replyAck, .status])
        try client.shareMemory()
        #expect(try client.ack(.setFeatures([.version1, .vhostUserProtocolFeatures])).isSuccess)
        #expect(try client.ack(.setStatus([.acknowledge, .driver, .featuresOK])).isSuccess)
        let user = { (n: Int) in UInt64(client.pool.range.startAddress) + UInt64(n * 4096) }
        #expect(try client.ack(.setVringNum(VhostUserVringState(index: 0, num: 16))).isSuccess)
        #expect(try client.ack(.setVringAddress(VhostUserVringAddress(index: 0, descriptor: user(0), used: user(2), available: user(1), log: 0))).isSuccess)
        let pipe = try Pipe()
        pipe.writeEnd.close()   // the read end reports EPOLLHUP forever
        try? client.send(.setVringKick(VhostUserVringFile(index: 0)), needReply: true, fds: [pipe.readEnd.rawValue])
        _ = try? client.ack(.setVringEnable(VhostUserVringState(index: 0, num: 1)))
        _ = try? client.ack(.setStatus([.acknowledge, .driver, .featuresOK, .driverOK]))
        usleep(500_000)
        client.close()
        let report = try server.report(1)
        #expect(report.workerCPUSeconds < 0.2, "the queue worker used \(report.workerCPUSeconds) s of CPU")
        guard case .violation(let reason) = report.end else {
            Issue.record("the session ended with \(String(describing: report.end))")
            return
        }
        #expect(reason.contains("setVringKick") && reason.contains("eventfd"), "\(reason)")
    }

    @Test("GHT-LIVE-05: a call or err descriptor that is not an eventfd ends the session at SET_VRING_CALL / SET_VRING_ERR",
          arguments: [VhostUserRequest.setVringCall, .setVringErr])
    func pipeCallOrErrRefused(_ request: VhostUserRequest) throws {
        let server = try TestBackEnd("pipecall")
        let client = try RawVhostUserClient(path: server.path)
        try client.negotiate([.replyAck, .status])
        let pipe = try Pipe()
        pipe.readEnd.close()   // a write into it would be EPIPE (or SIGPIPE)
        let file = VhostUserVringFile(index: 0)
        try? client.send(request == .setVringCall ? .setVringCall(file) : .setVringErr(file), needReply: true, fds: [pipe.writeEnd.rawValue])
        #expect(client.isClosedByPeer())
        guard case .violation(let reason) = try server.report(1).end else {
            Issue.record("the session did not end with a violation")
            return
        }
        #expect(reason.contains("\(request)") && reason.contains("eventfd"), "\(reason)")
    }

    @Test("GHT-LIVE-05: a kick descriptor that hangs up after the queue started stops being watched: the worker does not spin and reports it once")
    func kickHangupDoesNotSpin() throws {
        let s = try QueueProcessorTests.Setup(device: ChecksumEchoDevice())
        let pipe = try Pipe()
        let kick = try Doorbell(uncheckedAdopting: try pipe.readEnd.duplicate())
        let lost = Atomic<Int>(0)
        let worker = try QueueWorker(processor: s.processor, kick: kick, call: nil, onBroken: { _ in },
                                     onKickLost: { lost.add(1, ordering: .relaxed) })
        pipe.writeEnd.close()
        usleep(500_000)
        worker.nudge()   // one more pass, so the worker publishes its CPU time
        usleep(50_000)
        let cpu = worker.statistics.cpuSeconds
        worker.stop()
        #expect(cpu < 0.1, "the worker used \(cpu) s of CPU in 0.5 s")
        #expect(lost.load(ordering: .relaxed) == 1)
    }

    @Test("GHT-LIVE-06: a back-end that trickles its reply one byte at a time is a timeout after the reply deadline, not a wait as long as the trickle")
    func tricklingBackEnd() throws {
        let (mine, theirs) = try UnixSocket.pair()
        let stop = Atomic<Bool>(false)
        let trickler = WorkerThread(name: "trickle") {
            let channel = VhostUserChannel(socket: mine)
            guard let request = try? channel.receive() else { return }
            // A well-formed GET_FEATURES reply, 20 bytes, one every 100 ms: 2 s in all.
            let reply = VhostUserHeader.reply(request.frame.header.request, payloadSize: 8).encoded() + [0, 0, 0, 0, 1, 0, 0, 0]
            for byte in reply where !stop.load(ordering: .relaxed) {
                guard (try? mine.send([byte])) != nil else { return }
                usleep(100_000)
            }
        }
        var configuration = FrontEndConfiguration()
        configuration.timeoutMilliseconds = 500
        try theirs.setReceiveTimeout(milliseconds: configuration.timeoutMilliseconds)
        let frontEnd = try FrontEnd(socket: theirs, configuration: configuration)
        let start = ContinuousClock.now
        #expect(throws: FrontEndError.timedOut("reply to getFeatures")) { try frontEnd.initialize() }
        let elapsed = ContinuousClock.now - start
        #expect(elapsed < .milliseconds(1500), "the front-end waited \(elapsed)")
        stop.store(true, ordering: .relaxed)
        mine.close()
        trickler.join()
    }

    @Test("GHT-LIVE-06: a front-end whose back-end does not read is a timeout after the deadline, not a send blocked forever")
    func backEndNotReading() throws {
        let (theirs, mine) = try Self.fullSocket()   // the front-end's socket, its buffer already full
        // Bounds the test even without the rule: the back-end side goes away after 3 s.
        let done = Atomic<Bool>(false)
        let closer = WorkerThread(name: "closer") {
            for _ in 0..<60 where !done.load(ordering: .relaxed) { usleep(50_000) }
            mine.close()
        }
        var configuration = FrontEndConfiguration()
        configuration.timeoutMilliseconds = 300
        let frontEnd = try FrontEnd(socket: theirs, configuration: configuration)
        let start = ContinuousClock.now
        #expect(throws: FrontEndError.timedOut("sending getFeatures")) { try frontEnd.initialize() }
        #expect(ContinuousClock.now - start < .milliseconds(2000))
        done.store(true, ordering: .relaxed)
        closer.join()
    }

    @Test("GHT-LIVE-06: a send to a peer that does not read fails after the deadline instead of blocking")
    func sendDeadline() throws {
        let (full, peer) = try Self.fullSocket()
        let start = ContinuousClock.now
        #expect(throws: SystemError(errno: ETIMEDOUT, operation: "sendmsg")) {
            try full.send([UInt8](repeating: 1, count: 64), timeoutMilliseconds: 200)
        }
        let elapsed = ContinuousClock.now - start
        #expect(elapsed >= .milliseconds(190) && elapsed < .seconds(2))
        withExtendedLifetime(peer) {}
    }
}
