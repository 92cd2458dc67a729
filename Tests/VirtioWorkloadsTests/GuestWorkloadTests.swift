import Testing
import VirtioSystem
import VirtioCore
import VirtioDevices
import VirtioGrants
import VirtioTransport
import VirtioWorkloads

/// A back-end in this process serving `makeDevice` on a fresh socket, stopped when released.
final class LocalBackEnd {
    let directory: TemporaryDirectory
    let path: String
    let backEnd: BackEnd

    init(_ makeDevice: @escaping @Sendable () -> any VirtioDevice) throws {
        directory = try TemporaryDirectory(prefix: "vg-workload")
        path = directory.path + "/backend.sock"
        backEnd = try BackEnd(socketPath: path, makeDevice: makeDevice)
        backEnd.start()
    }

    /// The reports of the first `count` sessions to end, waiting up to 10 s for them.
    func reports(_ count: Int) -> [SessionReport] {
        for _ in 0..<10_000 where backEnd.reports.count < count { SystemClock.sleep(milliseconds: 1) }
        return backEnd.reports
    }

    deinit {
        backEnd.stop()
        directory.remove()
    }
}

@Suite("Guest workloads in this process", .serialized)
struct GuestWorkloadTests {
    @Test("GHT-HDL-02: the stream workload verifies every reply of the checksum device, split and packed", arguments: ["split", "packed"])
    func stream(ring: String) throws {
        let server = try LocalBackEnd { ChecksumEchoDevice(queueCount: 1, maxQueueSize: 256) }
        var workload = GuestWorkload(socket: server.path, kind: .stream)
        workload.seconds = 0.5
        workload.domain = 5
        workload.ring = FrontEndConfiguration.RingFormat(rawValue: ring)!
        let report = workload.run()
        #expect(report.ok && report.exitStatus == 0, "\(report.json.text)")
        #expect(report.chains > 10 && report.mismatches == 0 && report.grantsMade == report.grantsEnded)
        let session = try #require(server.reports(1).first)
        #expect(session.granter == DomainID(5) && session.chains == UInt64(report.chains))
        let line = try #require(JSONObject(parsing: report.json.text))
        #expect(line.int("guest") == 5 && line.string("ring") == ring && line.bool("ok") == true && line.int("chains") == report.chains)
        #expect(report.seconds >= 0.5 && (line.number("seconds") ?? 0) >= 0.5, "the run's wall time is reported")
    }

    @Test("GHT-CTL-01, GHT-CTL-04, GHT-HDL-01, GHT-BRK-01: one guest's ungranted handle breaks its own queue; a guest streaming beside it is unaffected")
    func faultIsolation() throws {
        let server = try LocalBackEnd { ChecksumEchoDevice(queueCount: 1, maxQueueSize: 256) }
        var bad = GuestWorkload(socket: server.path)
        bad.seconds = 1
        bad.domain = 1
        bad.presentsForbiddenHandle = true
        var good = bad
        good.domain = 2
        good.presentsForbiddenHandle = false
        let results = Locked<[GuestReport]>([])
        let badRun = WorkerThread(name: "bad") { [bad] in let r = bad.run(); results.withLock { $0.append(r) } }
        let goodReport = good.run()
        badRun.join()
        let badReport = try #require(results.withLock { $0.first } as GuestReport?)
        #expect(badReport.ok && badReport.faultsBlocked == 1 && badReport.resets == 1, "\(badReport.json.text)")
        #expect(goodReport.ok && goodReport.resets == 0 && goodReport.mismatches == 0, "\(goodReport.json.text)")
        let reports = server.reports(2)
        let badSession = try #require(reports.first { $0.granter == DomainID(1) })
        let goodSessions = reports.filter { $0.granter == DomainID(2) }
        #expect(badSession.faults[.notGranted] == 1 && badSession.brokenQueues.count == 1, "\(reports)")
        #expect(goodSessions.count == 1 && goodSessions.allSatisfy { $0.faults.isEmpty && $0.brokenQueues.isEmpty })
    }

    @Test("The throughput and latency workloads verify every echo; latency reports its round trips")
    func throughputAndLatency() throws {
        let server = try LocalBackEnd { EchoDevice(queueCount: 1, maxQueueSize: 256) }
        var throughput = GuestWorkload(socket: server.path, kind: .throughput)
        throughput.seconds = 0.2
        throughput.outstanding = 256
        let t = throughput.run()
        #expect(t.ok && t.chains > 100 && t.bytesSent == t.chains * 4096, "\(t.json.text)")
        var latency = GuestWorkload(socket: server.path, kind: .latency)
        latency.requests = 200
        latency.mode = .guestPhysical
        let l = latency.run()
        #expect(l.ok && l.chains == 300, "\(l.json.text)")
        let rtt = try #require(l.roundTrip)
        #expect(rtt.p50 > 0 && rtt.p50 <= rtt.p99)
        let line = try #require(JSONObject(parsing: l.json.text))
        #expect(line.string("mode") == "gpa" && line.number("rtt_p99_us") != nil)
    }

    @Test("A workload that cannot reach its back-end reports the typed error, exit status 3; a malformed one never connects")
    func failures() {
        let unreachable = GuestWorkload(socket: "/nonexistent/vg-\(UInt32.random(in: 0...UInt32.max)).sock").run()
        #expect(!unreachable.ok && unreachable.exitStatus == 3)
        #expect(unreachable.error?.hasPrefix("socket: ") == true, "\(unreachable.json.text)")
        var odd = GuestWorkload(socket: "/nonexistent.sock")
        odd.queueSize = 100
        #expect(odd.problem == "queue size must be a power of 2 for a split ring")
        #expect(odd.run().error == "invalid workload: queue size must be a power of 2 for a split ring")
        odd.ring = .packed
        #expect(odd.problem == nil)
    }
}
