import Testing
import VirtioCore
import VirtioDevices
import VirtioScheduler
import VirtioSystem
import VirtioTransport

/// A guest of a shared device (`serve --vfs`) whose back-end process is restarted: the new
/// scheduler takes the reconnecting guest as a guest of its own, its rings where they stood.
@Suite("A shared device's guest reconnecting to a restarted back-end", .serialized)
struct SharedDeviceReconnectTests {
    /// A shared echo device with `vfs` functions listening at `socket`, and its back-end.
    static func start(_ socket: String, vfs: Int) throws -> (SharedDevice, BackEnd) {
        var configuration = SharedDeviceConfiguration()
        configuration.functionCount = vfs
        let shared = try SharedDevice(configuration) { EchoDevice(queueCount: 1, maxQueueSize: 32768) }
        let listener = try #require(shared.listeners(socket: socket).first)
        let backEnd = try shared.backEnd(for: listener, configuration: BackEndConfiguration())
        backEnd.start()
        return (shared, backEnd)
    }

    /// `count` echo round trips of varying size, every reply checked.
    static func echo(_ queue: FrontEndQueue, count: Int, from first: Int) throws {
        var expected: [UInt64: [UInt8]] = [:]
        var sent = 0, done = 0
        while done < count {
            while sent < count && queue.freeCount > 0 {
                let bytes = (0..<(64 + (first + sent) % 900)).map { UInt8(truncatingIfNeeded: $0 &+ first &+ sent) }
                expected[try queue.submit(bytes, replyCapacity: bytes.count)] = bytes
                sent += 1
            }
            try queue.publish()
            for c in try queue.waitForCompletions() {
                #expect(expected.removeValue(forKey: c.token) == c.reply)
                done += 1
            }
        }
    }

    @Test("GHT-RCN-01, GHT-RCN-08: a guest of serve --vfs carries on after its back-end restarted on the same socket, twice")
    func guestOfSharedDeviceCarriesOn() throws {
        let directory = try TemporaryDirectory(prefix: "vg-shared-rcn")
        defer { directory.remove() }
        let socket = directory.path + "/backend.sock"
        var (shared, backEnd) = try Self.start(socket, vfs: 2)
        var configuration = FrontEndConfiguration()
        configuration.reconnect = FrontEndReconnectPolicy(retryIntervalMilliseconds: 10, timeLimitMilliseconds: 10_000)
        let frontEnd = try FrontEnd.connect(socketPath: socket, configuration: configuration)
        try Self.echo(frontEnd.queues[0], count: 200, from: 0)
        for round in 1...2 {
            backEnd.stop()
            shared.stop()
            (shared, backEnd) = try Self.start(socket, vfs: 2)
            try Self.echo(frontEnd.queues[0], count: 200, from: 1000 * round)
        }
        #expect(frontEnd.reconnectCount == 2)
        frontEnd.close()
        #expect(frontEnd.grantsEnded == frontEnd.grantsMade)
        backEnd.stop()
        shared.stop()
    }
}
