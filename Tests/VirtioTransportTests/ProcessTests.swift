import Testing
import VirtioCore
import VirtioDevices
import VirtioGrants
import VirtioTransport

#if canImport(Glibc)
import Glibc
#endif

/// Front-ends and back-ends as separate processes: `virtio-grant serve` and `virtio-grant guest`
/// started with posix_spawn, and this process on the other side.
@Suite("Separate processes", .tags(.transport), .serialized)
struct ProcessTests {
    @Test("INIT-DRV-01, GHT-VUG-01: the full negotiation with a back-end process; 5000 requests verified byte for byte")
    func negotiationWithBackEndProcess() throws {
        let (server, path) = try ProgramUnderTest.serve()
        let frontEnd = try FrontEnd.connect(socketPath: path)
        #expect(frontEnd.features.isSuperset(of: [.version1, .accessPlatform, .eventIndex, .indirectDescriptors]))
        #expect(try frontEnd.status() == [.acknowledge, .driver, .featuresOK, .driverOK])
        #expect(try frontEnd.readConfig(size: 8) == [1, 0, 0, 0, 0, 0x80, 0, 0])
        try EndpointTests.stream(frontEnd, count: 5000)
        frontEnd.close()
        #expect(frontEnd.grantsEnded == frontEnd.grantsMade)
        let session = try server.line(containing: "\"session\"")
        #expect(jsonInteger(session, "chains") == 5000)
        #expect(jsonInteger(session, "granter") == 1)
        #expect(session.contains("\"end\":\"disconnected\""))
    }

    @Test("GHT-HDL-02: a guest process streams through this process's back-end and verifies every byte")
    func guestProcess() throws {
        let server = try TestBackEnd("guest")
        let guest = try ProgramUnderTest(["guest", "--socket", server.path, "--seconds", "1", "--domain", "5"])
        let summary = try guest.line(containing: "\"guest\"")
        #expect(try guest.finish() == .exited(0), "\(summary)")
        #expect(summary.contains("\"ok\":true") && jsonInteger(summary, "mismatches") == 0)
        let report = try server.report(1)
        #expect(report.granter == DomainID(5))
        #expect(report.chains == UInt64(jsonInteger(summary, "chains") ?? -1) && report.chains > 100)
        #expect(report.faults.isEmpty && report.brokenQueues.isEmpty)
    }

    @Test("GHT-CTL-02, GHT-VU-21: kill -9 of a front-end mid-stream: the back-end process closes everything and serves the next")
    func frontEndKilled() throws {
        let (server, path) = try ProgramUnderTest.serve()
        let baseline = server.openDescriptorCount
        let guest = try ProgramUnderTest(["guest", "--socket", path, "--seconds", "60"])
        // Connected and set up: memory, grant table and doorbells are open in the back-end.
        #expect(eventually(within: 10_000) { server.openDescriptorCount >= baseline + 6 })
        // Time for the first requests to complete even when the whole suite loads the machine
        // (300 ms saw none once, in a debug build beside every other suite).
        usleep(1_000_000)
        try guest.process.kill(SIGKILL)
        #expect(try guest.finish() == .signaled(SIGKILL))
        let session = try server.line(containing: "\"session\"")
        #expect(session.contains("\"end\":\"disconnected\""), "\(session)")
        #expect((jsonInteger(session, "chains") ?? 0) > 0, "it was mid-stream")
        #expect(eventually { server.openDescriptorCount == baseline }, "descriptors: \(server.openDescriptorCount), before: \(baseline)")
        #expect(server.process.exitStatus == nil, "the back-end survives")
        let next = try ProgramUnderTest(["guest", "--socket", path, "--seconds", "0.3"])
        #expect(try next.finish() == .exited(0))
    }

    @Test("GHT-CTL-05: a back-end killed mid-stream gives the front-end the typed disconnected error, well before its timeout")
    func backEndKilled() throws {
        let (server, path) = try ProgramUnderTest.serve()
        var configuration = FrontEndConfiguration()
        configuration.timeoutMilliseconds = 20_000
        let frontEnd = try FrontEnd.connect(socketPath: path, configuration: configuration)
        try EndpointTests.stream(frontEnd, count: 200)
        let queue = frontEnd.queues[0]
        try server.process.kill(SIGKILL)
        let start = ContinuousClock.now
        #expect(throws: FrontEndError.disconnected) {
            while true {
                while queue.freeCount > 0 { try queue.submit([1, 2, 3], replyCapacity: 64) }
                try queue.publish()
                _ = try queue.waitForCompletions()
            }
        }
        #expect(ContinuousClock.now - start < .seconds(3))
        #expect(throws: FrontEndError.disconnected) { _ = try frontEnd.status() }
        #expect(try server.finish() == .signaled(SIGKILL))
    }

    @Test("GHT-CTL-05: a guest process whose back-end dies exits with the disconnected error, not a hang")
    func guestOutlivesBackEnd() throws {
        let (server, path) = try ProgramUnderTest.serve()
        let guest = try ProgramUnderTest(["guest", "--socket", path, "--seconds", "60"])
        #expect(eventually(within: 10_000) { server.openDescriptorCount >= 10 })
        usleep(200_000)
        try server.process.kill(SIGKILL)
        let start = ContinuousClock.now
        let summary = try guest.line(containing: "\"guest\"", timeoutMilliseconds: 10_000)
        #expect(try guest.finish() == .exited(3))
        #expect(ContinuousClock.now - start < .seconds(3))
        #expect(summary.contains("\"error\":\"the back-end disconnected\""), "\(summary)")
    }

    @Test("GHT-CTL-01, GHT-CTL-02, GHT-VU-21: each malformed message closes its connection; the back-end process keeps every descriptor count and serves a guest",
          arguments: SessionRuleTests.violations)
    func malformedMessages(_ v: ViolationCase) throws {
        let (server, path) = try ProgramUnderTest.serve()
        let baseline = server.openDescriptorCount
        let client = try RawVhostUserClient(path: path)
        try v.act(client)
        #expect(client.isClosedByPeer())
        let session = try server.line(containing: "\"session\"")
        #expect(session.contains("\"end\":\"closed: ") && session.contains(v.reason), "\(session)")
        client.close()
        #expect(eventually { server.openDescriptorCount == baseline }, "descriptors: \(server.openDescriptorCount), before: \(baseline)")
        let guest = try ProgramUnderTest(["guest", "--socket", path, "--seconds", "0.2"])
        #expect(try guest.finish() == .exited(0))
    }

    @Test("The demo: a back-end process and two guest processes, every check held, over split and packed rings",
          arguments: ["split", "packed"])
    func demo(ring: String) throws {
        let demo = try ProgramUnderTest(["demo", "--seconds", "1", "--json", "--ring", ring])
        let verdict = try demo.line(containing: "\"demo\"", timeoutMilliseconds: 60_000)
        #expect(try demo.finish() == .exited(0), "\(verdict)")
        #expect(verdict.contains("\"ok\":true") && jsonInteger(verdict, "guests") == 2)
        #expect(verdict.contains("\"ring\":\"\(ring)\""))
    }
}
