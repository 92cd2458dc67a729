import Testing
import VirtioCore
import VirtioGrants

#if canImport(Glibc)
import Glibc
#endif
import VirtioSystem
import VhostUser

/// A front-end that shrinks the files it shared, at each stage of a session. The back-end runs
/// in this process: without the truncation guard each test dies of SIGBUS. After the truncation
/// the client must not touch the lost pages through its own mapping (it is not guarded).
@Suite("Truncation: a front-end that shrinks shared memory costs only its own session", .tags(.transport), .serialized)
struct TruncationTests {
    /// Session 1, sealed memory, serving; `check` runs a request on it after the hostile session.
    struct Bystander {
        var queue: HandDrivenQueue
        init(_ server: TestBackEnd) throws {
            queue = try HandDrivenQueue(try RawVhostUserClient(path: server.path))
            try queue.driverOK()
        }

        mutating func check(_ n: Int) throws {
            try queue.post(n)
            #expect(try queue.call.wait(timeoutMilliseconds: 3000), "the bystander is served")
            _ = try queue.call.drain()
            let used = try #require(try queue.driver.reapUsed())
            #expect(used.token == UInt64(n) && used.writtenLength == 8 + 16)
            #expect(queue.client.pool.range.slice(offset: (8 + n) * 4096 + 8, length: 16).withUnsafeBytes { Array($0) }
                    == Array(repeating: UInt8(n), count: 16))
        }
    }

    /// A back-end with a bystander (session 1) and a hostile client with unsealed memory whose
    /// queue is configured (session 2); the hostile queue is at FEATURES_OK, or running.
    func sessions(_ tag: String, running: Bool) throws -> (TestBackEnd, Bystander, RawVhostUserClient, HandDrivenQueue) {
        let server = try TestBackEnd(tag)
        let bystander = try Bystander(server)
        let client = try RawVhostUserClient(path: server.path, sealed: false)
        let q = try HandDrivenQueue(client)
        if running { try q.driverOK() }
        return (server, bystander, client, q)
    }

    /// The hostile session's end: closed for truncation, the queue broken with `memoryLost`.
    func expectEndedForTruncation(_ server: TestBackEnd, session: Int) throws {
        let report = try server.report(session)
        #expect(report.memoryLost)
        #expect(report.end?.description.contains("GHT-LIFE-03") == true, "\(String(describing: report.end))")
        if let error = report.brokenQueues[0] {
            #expect(error == .memoryFault(TranslationFault(.memoryLost, address: 0, length: 0, access: .read)))
        }
    }

    @Test("GHT-LIFE-03: buffers truncated before the device copies them: the process survives, the batch is not completed, the queue breaks and the session ends")
    func duringACopy() throws {
        var (server, bystander, client, q) = try sessions("trunc-copy", running: true)
        try q.post(1)
        #expect(try q.call.wait(timeoutMilliseconds: 3000))
        _ = try q.call.drain()
        #expect(try q.driver.reapUsed()?.token == 1)
        let poisoned = TruncationGuard.poisonedPages
        // Request 2's payload (page 6) and reply (page 10) go; the rings (pages 0-2) stay.
        client.pool.range.slice(offset: 6 * 4096, length: 16).fill(with: 2)
        try q.driver.add(readable: [BufferSegment(address: 6 * 4096, length: 16)], writable: [BufferSegment(address: 10 * 4096, length: 64)], token: 2)
        q.driver.publish()
        try client.truncate(client.pool, toPages: 4)
        try q.kick.signal()
        #expect(try q.err.wait(timeoutMilliseconds: 3000), "the err doorbell rings")
        #expect(try q.driver.reapUsed() == nil, "a batch that met lost memory is not completed")
        #expect(TruncationGuard.poisonedPages > poisoned)
        try expectEndedForTruncation(server, session: 2)
        try bystander.check(3)
    }

    @Test("GHT-LIFE-03: the rings truncated while the queue runs: the process survives, the queue breaks and the session ends")
    func duringABatch() throws {
        var (server, bystander, client, q) = try sessions("trunc-ring", running: true)
        try q.post(1)
        #expect(try q.call.wait(timeoutMilliseconds: 3000))
        try client.truncate(client.pool, toPages: 0)
        try q.kick.signal()
        #expect(try q.err.wait(timeoutMilliseconds: 3000), "the err doorbell rings")
        try expectEndedForTruncation(server, session: 2)
        try bystander.check(2)
    }

    @Test("GHT-LIFE-03: memory truncated after the queue was configured and before it starts: the first batch breaks the queue and the session ends")
    func beforeQueueStart() throws {
        var (server, bystander, client, q) = try sessions("trunc-start", running: false)
        try client.truncate(client.pool, toPages: 0)
        try client.send(.setVringEnable(VhostUserVringState(index: 0, num: 1)))   // the queue starts here
        try? client.send(.setStatus([.acknowledge, .driver, .featuresOK, .driverOK]))
        #expect(try q.err.wait(timeoutMilliseconds: 3000), "the err doorbell rings")
        try expectEndedForTruncation(server, session: 2)
        try bystander.check(1)
    }

    @Test("GHT-LIFE-03: a grant table truncated under the back-end: the ring's grants read as ungranted, the queue does not start, the session ends, the process survives")
    func grantTable() throws {
        let server = try TestBackEnd("trunc-table")
        var bystander = try Bystander(server)
        let client = try RawVhostUserClient(path: server.path, sealed: false)
        try client.negotiate()
        try client.shareMemory()
        // The ring areas granted (one reference per page 0-2), read-write to domain 0.
        let table = GrantTable(table: client.table.range, domain: DomainID(1), frameCount: client.pool.size / 4096)
        let refs = try (0..<3).map { page in try table.grant(frames: [UInt32(page)], to: DomainID(0), readOnly: false) }
        #expect(try client.ack(.setGrantTable(client.grantTableInfo()), fds: [client.table.fd.rawValue]).isSuccess)
        let poisoned = TruncationGuard.poisonedPages
        try client.truncate(client.table, toPages: 0)
        #expect(try client.ack(.setFeatures([.version1, .vhostUserProtocolFeatures, .accessPlatform])).isSuccess)
        for s: DeviceStatus in [[.acknowledge], [.acknowledge, .driver], [.acknowledge, .driver, .featuresOK]] {
            #expect(try client.ack(.setStatus(s)).isSuccess)
        }
        let handle = { (i: Int) in GrantHandle(reference: refs[i], offset: 0).rawValue }
        let kick = try Doorbell()
        #expect(try client.ack(.setVringNum(VhostUserVringState(index: 0, num: 16))).isSuccess)
        #expect(try client.ack(.setVringAddress(VhostUserVringAddress(index: 0, descriptor: handle(0), used: handle(2), available: handle(1), log: 0))).isSuccess)
        #expect(try client.ack(.setVringKick(VhostUserVringFile(index: 0)), fds: [kick.fd.rawValue]).isSuccess)
        try client.send(.setVringEnable(VhostUserVringState(index: 0, num: 1)), needReply: true)   // the queue starts here
        #expect(client.isClosedByPeer(), "the session ends")
        #expect(TruncationGuard.poisonedPages > poisoned)
        let report = try server.report(2)
        #expect(report.end?.description.contains("GHT-LIFE-03") == true, "\(String(describing: report.end))")
        try bystander.check(1)
    }
}
