import Testing
import VirtioCore
import VirtioDevices
import VirtioGrants
import VirtioSystem
import VirtioTransport

#if canImport(Glibc)
import Glibc
#endif

/// `virtio-grant serve` killed with SIGKILL mid-stream and restarted on the same socket, with
/// this process's front-end reconnecting by itself (Spec/restart.md §2).
@Suite("A back-end process killed mid-stream and restarted", .tags(.transport), .serialized)
struct BackEndKillTests {
    /// `serve --device checksum-late` at `path`, once it listens: requests stay in its device
    /// `holdMilliseconds` and are answered out of order from the device's own thread.
    static func serve(_ path: String, holdMilliseconds: Int) throws -> ProgramUnderTest {
        let program = try ProgramUnderTest(["serve", "--socket", path, "--device", "checksum-late", "--hold-ms", "\(holdMilliseconds)"])
        _ = try program.line(containing: "\"listening\"")
        return program
    }

    /// One request's bytes, from its number.
    static func payload(_ n: Int) -> [UInt8] {
        (0..<(1 + (n &* 7919) % 3000)).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ n) }
    }

    @Test("GHT-RCN-04, GHT-RCN-10: the back-end process killed with requests inside its out-of-order device and restarted, three times: every reply verified, none lost, none twice",
          arguments: [FrontEndConfiguration.RingFormat.split, .packed])
    func killedAndRestarted(ring: FrontEndConfiguration.RingFormat) throws {
        try killAndRestart(ring: ring)
    }

    private func killAndRestart(ring: FrontEndConfiguration.RingFormat) throws {
        let path = temporarySocketPath("kill-\(ring.rawValue)")
        var server = try Self.serve(path, holdMilliseconds: 100)
        var configuration = FrontEndConfiguration.reconnecting(ring: ring)
        configuration.queueCount = 1
        configuration.maxOutstanding = 32
        configuration.maxRequestSize = 4096
        configuration.maxReplySize = 4096 + 8
        let frontEnd = try FrontEnd.connect(socketPath: path, configuration: configuration)
        let queue = frontEnd.queues[0]
        var expected: [UInt64: Int] = [:]
        var n = 0, received = 0, duplicates = 0, wrong = 0
        let kills = 3, perPhase = 150
        for phase in 0...kills {
            let target = received + perPhase
            while received < target {
                while queue.freeCount > 0 {
                    expected[try queue.submit(Self.payload(n), replyCapacity: 8 + 3000, parts: 1 + n % 3)] = n
                    n += 1
                }
                try queue.publish()
                for c in try queue.waitForCompletions() {
                    guard let k = expected.removeValue(forKey: c.token) else {
                        duplicates += 1
                        continue
                    }
                    let bytes = Self.payload(k)
                    let sum = c.reply.prefix(8).reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
                    if sum != ChecksumEchoDevice.checksum(bytes) || !c.reply.dropFirst(8).elementsEqual(bytes) { wrong += 1 }
                    received += 1
                }
            }
            guard phase < kills else { break }
            // A full queue published, then time for the back-end to take every request into its
            // device (which holds each 100 ms): the kill finds them in flight.
            while queue.freeCount > 0 {
                expected[try queue.submit(Self.payload(n), replyCapacity: 8 + 3000)] = n
                n += 1
            }
            try queue.publish()
            usleep(40_000)
            try server.process.kill(SIGKILL)
            #expect(try server.finish() == .signaled(SIGKILL))
            server = try Self.serve(path, holdMilliseconds: 100)
        }
        while !expected.isEmpty {
            for c in try queue.waitForCompletions() {
                if expected.removeValue(forKey: c.token) == nil { duplicates += 1 } else { received += 1 }
            }
        }
        #expect(wrong == 0 && duplicates == 0)
        #expect(received == n, "every request came back")
        #expect(frontEnd.reconnectCount == kills)
        #expect(throws: FrontEndError.self) { _ = try queue.waitForCompletions(timeoutMilliseconds: 300) }
        frontEnd.close()
        #expect(frontEnd.grantsEnded == frontEnd.grantsMade)
    }

    @Test("GHT-RCN-11: the demo with its back-end killed and restarted mid-stream reports every reply verified and nothing lost")
    func demoWithRestarts() throws {
        let demo = try ProgramUnderTest(["demo", "--restarts", "2", "--seconds", "3", "--guests", "2", "--json"])
        let verdict = try demo.line(containing: "\"demo\":\"restarts\"", timeoutMilliseconds: 90_000)
        #expect(verdict.contains("\"ok\":true"), "\(verdict)")
        #expect(try demo.finish(timeoutMilliseconds: 30_000) == .exited(0))
    }

    @Test("GHT-RCN-12: a session whose front-end process vanished (SIGKILL) mid-stream ends without disturbing another session streaming meanwhile")
    func vanishedPeerLeavesOthersAlone() throws {
        let (server, path) = try ProgramUnderTest.serve()
        let guest = try ProgramUnderTest(["guest", "--socket", path, "--seconds", "60", "--domain", "3"])
        let frontEnd = try FrontEnd.connect(socketPath: path)
        try EndpointTests.stream(frontEnd, count: 300)
        let queue = frontEnd.queues[0]
        var expected: [UInt64: [UInt8]] = [:]
        for k in 0..<32 {
            let bytes = Self.payload(k)
            expected[try queue.submit(bytes, replyCapacity: 8 + bytes.count)] = bytes
        }
        try queue.publish()
        try guest.process.kill(SIGKILL)
        while !expected.isEmpty {
            for c in try queue.waitForCompletions() {
                let bytes = expected.removeValue(forKey: c.token)
                #expect(bytes != nil && c.reply.dropFirst(8).elementsEqual(bytes ?? []))
            }
        }
        #expect(try guest.finish() == .signaled(SIGKILL))
        let ended = try server.line(containing: "\"session\"")
        #expect(ended.contains("\"granter\":3") && ended.contains("\"end\":\"disconnected\""), "\(ended)")
        try EndpointTests.stream(frontEnd, count: 300)
        frontEnd.close()
        let ours = try server.line(containing: "\"session\"")
        #expect(ours.contains("\"granter\":1") && jsonInteger(ours, "broken_queues") == 0 && jsonInteger(ours, "chains") == 632, "\(ours)")
    }
}
