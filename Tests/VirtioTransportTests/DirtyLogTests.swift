import Synchronization
import Testing
import VirtioCore
import VirtioDevices
import VirtioSystem
import VirtioTransport
import VhostUser

#if canImport(Glibc)
import Glibc
#endif

/// A device that keeps every request and completes it 100 ms later from a thread of its own,
/// having filled its writable bytes: what an io_uring-backed device does.
private final class LateDevice: VirtioDevice {
    let deviceID: UInt32 = 2
    let deviceFeatures: VirtioFeatures = []
    let queueCount = 1
    let maxQueueSize = 256
    let kept = Atomic<Int>(0)
    func reset() {}
    func process(queue: Int, batch: inout RequestBatch) {
        for i in 0..<batch.count {
            let request = batch.completeLater(i)
            kept.add(1, ordering: .releasing)
            _ = WorkerThread(name: "late") {
                usleep(100_000)
                var writer = request.writer()
                _ = writer.produce(upTo: 8) { piece in
                    piece.initializeMemory(as: UInt8.self, repeating: 0xAB)
                    return piece.count
                }
                request.complete(with: writer)
            }
        }
    }
}

@Suite("Dirty logging: every page the back-end writes is marked while logging is on", .tags(.transport))
struct DirtyLogTests {
    static let used = LoggedQueue.guestPage(2)

    @Test("GHT-LOG-01: the back-end offers VHOST_F_LOG_ALL and LOG_SHMFD; SET_LOG_BASE without LOG_SHMFD ends the session")
    func offered() throws {
        let server = try TestBackEnd("log01")
        let client = try RawVhostUserClient(path: server.path)
        let offered = try client.negotiate([.replyAck])
        #expect(offered.contains(.vhostLogAll))
        try client.send(.getProtocolFeatures)
        guard case .protocolFeatures(let protocolOffered) = try client.reply(to: .getProtocolFeatures) else { throw RawVhostUserClient.Unexpected("") }
        #expect(protocolOffered.isSuperset(of: [.logSharedMemory, .deviceState]))
        let log = try SharedMemory.create(name: "log", size: 4096)
        try client.send(.setLogBase(VhostUserLogArea(size: 4096)), fds: [log.fd.rawValue])
        #expect(try "\(server.report().end!)".contains("LOG_SHMFD"))
    }

    @Test("GHT-LOG-05, GHT-LOG-06, GHT-LOG-03: guest-physical mode: the written buffer's pages, all of them whatever the used length, and the used ring at log_guest_addr are marked, nothing else; SET_LOG_BASE is answered without NEED_REPLY")
    func guestPhysical() throws {
        let server = try TestBackEnd("log05")
        var q = try LoggedQueue(try RawVhostUserClient(path: server.path))
        try q.driverOK()
        try q.roundTrip(1)
        #expect(q.markedPages() == [Self.used, LoggedQueue.guestPage(9)])
        q.clearLog()
        // 8 KiB writable, 24 bytes used: both pages are marked (a device may write past what it reports).
        try q.roundTrip(2, writable: 8192)
        #expect(q.markedPages() == [Self.used, LoggedQueue.guestPage(10), LoggedQueue.guestPage(11)])
    }

    @Test("GHT-LOG-10: IOVA mode: the pages marked are the guest-physical ones the memory table gives for the bytes written, not the IOVAs")
    func iovaMode() throws {
        let server = try TestBackEnd("log10")
        var q = try LoggedQueue(try RawVhostUserClient(path: server.path), iova: true)
        try q.driverOK()
        try q.roundTrip(1)
        #expect(q.markedPages() == [Self.used, LoggedQueue.guestPage(9)])
        q.clearLog()
        try q.roundTrip(3, writable: 4097)
        #expect(q.markedPages() == [Self.used, LoggedQueue.guestPage(11), LoggedQueue.guestPage(12)])
    }

    @Test("GHT-LOG-07, GHT-LOG-10: packed ring, guest-physical and IOVA: the descriptor ring and the device event area are marked with the buffers",
          arguments: [false, true])
    func packedRing(iova: Bool) throws {
        let server = try TestBackEnd("log07\(iova)")
        var q = try LoggedQueue(try RawVhostUserClient(path: server.path), iova: iova, packed: true)
        try q.driverOK()
        try q.roundTrip(1)
        #expect(q.markedPages() == [LoggedQueue.guestPage(0), Self.used, LoggedQueue.guestPage(9)])
    }

    @Test("GHT-LOG-06, GHT-LOG-11, GHT-LOG-12: LOG_ALL and VRING_F_LOG change while the ring runs: nothing is marked while LOG_ALL is off, the used ring only with VRING_F_LOG; any other change of features stays refused")
    func switchedWhileRunning() throws {
        let server = try TestBackEnd("log12")
        let client = try RawVhostUserClient(path: server.path)
        var q = try LoggedQueue(client, logAll: false)
        try q.driverOK()
        try q.roundTrip(0)
        #expect(q.markedPages().isEmpty, "a log but no LOG_ALL: nothing marked")
        #expect(try client.ack(.setFeatures(q.features.union(.vhostLogAll))).isSuccess)
        try q.roundTrip(1)
        #expect(q.markedPages() == [Self.used, LoggedQueue.guestPage(9)])
        q.clearLog()
        #expect(try client.ack(.setVringAddress(q.ringAddress(vringLog: false))).isSuccess)
        try q.roundTrip(2)
        #expect(q.markedPages() == [LoggedQueue.guestPage(10)], "without VRING_F_LOG the used ring is not marked")
        q.clearLog()
        #expect(try client.ack(.setFeatures(q.features)).isSuccess)
        try q.roundTrip(3)
        #expect(q.markedPages().isEmpty, "LOG_ALL off again: nothing marked")
        try client.send(.setFeatures(q.features.union(.eventIndex)), needReply: true)
        #expect(try "\(server.report().end!)".contains("SET_FEATURES while queues run"))
    }

    @Test("GHT-LOG-03: a log too small for the guest memory, or larger than its file, is refused with a non-zero reply and nothing is marked")
    func hostileLogRefused() throws {
        for (tag, area) in [("small", VhostUserLogArea(size: 39)), ("beyond", VhostUserLogArea(size: 8192)), ("offset", VhostUserLogArea(size: 64, offset: 4096))] {
            let server = try TestBackEnd("log03\(tag)")
            var q = try LoggedQueue(try RawVhostUserClient(path: server.path), logArea: area, expectLogAck: false)
            try q.driverOK()
            try q.roundTrip(1)
            #expect(q.markedPages().isEmpty, "\(tag)")
        }
        // 40 bytes cover the pool's 320 pages (1 MiB + 256 KiB): accepted.
        let server = try TestBackEnd("log03ok")
        var q = try LoggedQueue(try RawVhostUserClient(path: server.path), logArea: VhostUserLogArea(size: 40))
        try q.driverOK()
        try q.roundTrip(1)
        #expect(q.markedPages() == [Self.used, LoggedQueue.guestPage(9)])
    }

    @Test("GHT-LOG-04: a memory table change the log no longer covers drops the log: nothing is marked until a larger one comes")
    func memoryOutgrowsLog() throws {
        let server = try TestBackEnd("log04")
        let client = try RawVhostUserClient(path: server.path)
        var q = try LoggedQueue(client, logArea: VhostUserLogArea(size: 64))   // covers 512 pages: 2 MiB
        let more = try SharedMemory.create(name: "more", size: 4096)
        let far = VhostUserMemoryRegion(guestAddress: 0x100_0000, size: 4096, userAddress: UInt64(more.range.startAddress), mmapOffset: 0)
        #expect(try client.ack(.addMemoryRegion(far), fds: [more.fd.rawValue]).isSuccess)
        try q.driverOK()
        try q.roundTrip(1)
        #expect(q.markedPages().isEmpty)
        try client.send(.setLogBase(VhostUserLogArea(size: 4096)), fds: [q.log.fd.rawValue])
        #expect(try client.reply(to: .setLogBase(VhostUserLogArea(size: 4096))) == .ack(.setLogBase, .success))
        try q.roundTrip(2)
        #expect(q.markedPages() == [Self.used, LoggedQueue.guestPage(10)])
    }

    @Test("GHT-LOG-09: the SET_LOG_FD eventfd is signalled after a batch marked the log; a descriptor that is not an eventfd ends the session")
    func logEventFD() throws {
        let server = try TestBackEnd("log09")
        let client = try RawVhostUserClient(path: server.path)
        var q = try LoggedQueue(client)
        let bell = try Doorbell()
        #expect(try client.ack(.setLogFD, fds: [bell.fd.rawValue]).isSuccess)
        try q.driverOK()
        try q.roundTrip(1)
        #expect(try bell.wait(timeoutMilliseconds: 3000))
        let pipe = try Pipe()
        try client.send(.setLogFD, needReply: true, fds: [pipe.readEnd.rawValue])
        #expect(try "\(server.report().end!)".contains("SET_LOG_FD"))
    }

    @Test("GHT-LOG-15: a log the front-end truncates under the back-end's mapping ends the session (memory lost), never the process")
    func truncatedLog() throws {
        let server = try TestBackEnd("log15")
        let client = try RawVhostUserClient(path: server.path)
        let log = try SharedMemory.createUnsealed(name: "log", size: 4096)
        var q = try LoggedQueue(client, log: log)
        try q.driverOK()
        try q.roundTrip(1)
        try client.truncate(log, toPages: 0)
        try q.post(2)
        _ = try q.call.wait(timeoutMilliseconds: 500)
        try q.post(3)
        let report = try server.report()
        #expect(report.memoryLost)
    }

    @Test("GHT-LOG-08, GHT-LOG-14: a request the device kept is marked when it completes, and GET_VRING_BASE replies only once it was completed and marked")
    func keptRequestsFlushedAtStop() throws {
        let path = temporarySocketPath("log08")
        let device = LateDevice()
        let backEnd = try BackEnd(socketPath: path) { device }
        backEnd.start()
        defer { backEnd.stop() }
        var q = try LoggedQueue(try RawVhostUserClient(path: path))
        try q.driverOK()
        try q.post(1)
        while device.kept.load(ordering: .acquiring) == 0 { usleep(1000) }
        #expect(q.markedPages().isEmpty, "not completed yet: not marked yet")
        try q.client.send(.getVringBase(VhostUserVringState(index: 0, num: 0)))
        #expect(try q.client.reply(to: .getVringBase(VhostUserVringState(index: 0, num: 0))) == .vringBase(VhostUserVringState(index: 0, num: 1)))
        #expect(q.markedPages() == [Self.used, LoggedQueue.guestPage(9)])
        #expect(try q.driver.reapUsed()?.writtenLength == 8)
    }
}

@Suite("Dirty logging: QEMU 7.2's stop of the migration's source", .tags(.transport))
struct MigrationStopTests {
    @Test("GHT-LOG-08: status 0 then GET_VRING_BASE (QEMU 7.2's vhost_dev_stop): the reset flushes and marks, and GET_VRING_BASE answers where the ring stopped, until a new base is set")
    func statusZeroThenGetVringBase() throws {
        let server = try TestBackEnd("log08qemu")
        let client = try RawVhostUserClient(path: server.path)
        var q = try LoggedQueue(client)
        try q.driverOK()
        try q.roundTrip(1)
        try q.roundTrip(2)
        #expect(try client.ack(.setStatus([])).isSuccess)
        let ask = VhostUserMessage.getVringBase(VhostUserVringState(index: 0, num: 0))
        try client.send(ask)
        #expect(try client.reply(to: ask) == .vringBase(VhostUserVringState(index: 0, num: 2)))
        #expect(q.markedPages() == [LoggedQueue.guestPage(2), LoggedQueue.guestPage(9), LoggedQueue.guestPage(10)])
        #expect(try client.ack(.setVringBase(VhostUserVringState(index: 0, num: 0))).isSuccess)
        try client.send(ask)
        #expect(try client.reply(to: ask) == .vringBase(VhostUserVringState(index: 0, num: 0)))
    }
}
