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

/// A device with a configuration space of `space` bytes (none when empty), or one that answers
/// windows itself with `answer`; it completes nothing.
final class ConfigurableDevice: VirtioDevice {
    let deviceID: UInt32 = 4
    let deviceFeatures: VirtioFeatures = []
    let queueCount = 1
    let maxQueueSize = 256
    let space: [UInt8]
    let answer: (@Sendable (Int, Int) throws(ConfigurationSpaceError) -> [UInt8])?

    init(space: [UInt8] = [], answer: (@Sendable (Int, Int) throws(ConfigurationSpaceError) -> [UInt8])? = nil) {
        self.space = space
        self.answer = answer
    }

    func readConfig() -> [UInt8] { space }
    var configurationSize: Int { answer == nil ? space.count : 256 }
    func readConfig(offset: Int, count: Int) throws(ConfigurationSpaceError) -> [UInt8] {
        if let answer { return try answer(offset, count) }
        return try ConfigurationSpace(space).read(offset: offset, count: count)
    }
    func process(queue: Int, batch: inout RequestBatch) {}
    func reset() {}
}

@Suite("Embedding: protocol features per back-end, configuration windows", .tags(.transport))
struct EmbeddingTests {
    /// A back-end serving `device` with `configure` applied and a collecting log.
    static func serve(_ device: @escaping @Sendable () -> any VirtioDevice,
                      _ configure: (inout BackEndConfiguration) -> Void = { _ in }) throws -> (BackEnd, CollectingLogSink) {
        let log = CollectingLogSink()
        var configuration = BackEndConfiguration()
        configuration.logSink = log
        configure(&configuration)
        let backEnd = try BackEnd(socketPath: temporarySocketPath("embed"), configuration: configuration, makeDevice: device)
        backEnd.start()
        return (backEnd, log)
    }

    static func offeredProtocolFeatures(_ c: RawVhostUserClient) throws -> VhostUserProtocolFeatures {
        try c.send(.getProtocolFeatures)
        guard case .protocolFeatures(let offered) = try c.reply(to: .getProtocolFeatures) else {
            throw RawVhostUserClient.Unexpected("GET_PROTOCOL_FEATURES")
        }
        return offered
    }

    @Test("GHT-EMB-01: CONFIG is offered only to a device with a configuration space; accepting it for one without ends the session")
    func configOnlyWithASpace() throws {
        let (none, _) = try Self.serve { ConfigurableDevice() }
        defer { none.stop() }
        let c = try RawVhostUserClient(path: none.socketPath)
        defer { c.close() }
        let offered = try Self.offeredProtocolFeatures(c)
        #expect(offered == BackEndConfiguration.implementedProtocolFeatures.subtracting(.config))
        try c.send(.setProtocolFeatures([.replyAck, .config]))
        #expect(c.isClosedByPeer())
        #expect(eventually { none.reports.first?.end == .violation("SET_PROTOCOL_FEATURES accepts features not offered: \(VhostUserProtocolFeatures.config)") })

        let (some, _) = try Self.serve { ConfigurableDevice(space: [1, 2, 3, 4]) }
        defer { some.stop() }
        let d = try RawVhostUserClient(path: some.socketPath)
        defer { d.close() }
        #expect(try Self.offeredProtocolFeatures(d) == BackEndConfiguration.implementedProtocolFeatures)
        #expect(try Self.offeredProtocolFeatures(d).contains(.config))
        // The sample devices: virtio-rng has no configuration space, blk and net have one.
        let configuration = BackEndConfiguration()
        #expect(!configuration.offeredProtocolFeatures(for: EntropyDevice()).contains(.config))
        #expect(configuration.offeredProtocolFeatures(for: ChecksumEchoDevice()).contains(.config))
    }

    @Test("GHT-EMB-01: the Swift front-end drives a device without a configuration space, and reads the configuration only of one with a space")
    func frontEndWithoutConfig() throws {
        let (rng, _) = try Self.serve { EntropyDevice() }
        defer { rng.stop() }
        let frontEnd = try FrontEnd.connect(socketPath: rng.socketPath)
        defer { frontEnd.close() }
        let token = try frontEnd.queues[0].submit([], replyCapacity: 32)
        try frontEnd.queues[0].publish()
        #expect(try frontEnd.queues[0].waitForCompletions(timeoutMilliseconds: 5000).map(\.token) == [token])
        #expect(throws: FrontEndError.negotiation("the device has no configuration space (CONFIG not offered)")) { try frontEnd.readConfig(size: 8) }

        let (echo, _) = try Self.serve { ChecksumEchoDevice(queueCount: 1, maxQueueSize: 256) }
        defer { echo.stop() }
        let other = try FrontEnd.connect(socketPath: echo.socketPath)
        defer { other.close() }
        #expect(try other.readConfig(size: 8) == [1, 0, 0, 0, 0, 1, 0, 0])
    }

    @Test("GHT-EMB-02: a back-end's offer can be narrowed, never widened past what the session implements and what applies to the device")
    func overriddenOffers() throws {
        var configuration = BackEndConfiguration()
        configuration.protocolFeatures = [.replyAck, .config, .inbandNotifications, .pageFault]
        #expect(configuration.offeredProtocolFeatures(for: ConfigurableDevice(space: [0])) == [.replyAck, .config])
        #expect(configuration.offeredProtocolFeatures(for: ConfigurableDevice()) == [.replyAck])
        configuration.protocolFeatures = nil
        configuration.transportFeatures = VirtioFeatures.implementedTransport.subtracting(.ringPacked).union(VirtioFeatures(rawValue: 1 << 38))
        #expect(configuration.offeredTransportFeatures == VirtioFeatures.implementedTransport.subtracting(.ringPacked))

        let (backEnd, _) = try Self.serve({ ChecksumEchoDevice() }) { c in
            c.protocolFeatures = [.replyAck, .status, .grantTable]
            c.transportFeatures = VirtioFeatures.implementedTransport.subtracting(.ringPacked)
        }
        defer { backEnd.stop() }
        let c = try RawVhostUserClient(path: backEnd.socketPath)
        defer { c.close() }
        #expect(try Self.offeredProtocolFeatures(c) == [.replyAck, .status, .grantTable])
        let features = try c.negotiate([.replyAck, .status])
        #expect(!features.contains(.ringPacked) && features.contains(.eventIndex) && features.contains(.version1))
        try c.send(.setProtocolFeatures([.replyAck, .configureMemorySlots]))
        #expect(c.isClosedByPeer(), "a feature the back-end does not offer is not accepted")
    }

    @Test("GHT-EMB-03: a configuration window starting outside the space, negative or overflowing is a typed error; one running past the end reads zeros")
    func configurationWindows() throws {
        let space = ConfigurationSpace([1, 2, 3, 4, 5, 6])
        #expect(try space.read(offset: 0, count: 6) == [1, 2, 3, 4, 5, 6])
        #expect(try space.read(offset: 4, count: 4) == [5, 6, 0, 0])
        #expect(try space.read(offset: 6, count: 0) == [])
        #expect(try space.read(offset: 300, count: 0) == [])
        for (offset, count) in [(6, 1), (7, 2), (-1, 2), (0, -1), (Int.max, 2), (2, Int.max), (Int.min, 1)] {
            #expect(throws: ConfigurationSpaceError.outOfRange(offset: offset, count: count, size: 6)) {
                try space.read(offset: offset, count: count)
            }
        }
        #expect(throws: ConfigurationSpaceError.outOfRange(offset: 0, count: 4, size: 0)) { try ConfigurationSpace([]).read(offset: 0, count: 4) }
        // The protocol's default: the image of readConfig(), through ConfigurationSpace.
        #expect(try ChecksumEchoDevice(queueCount: 2, maxQueueSize: 512).readConfig(offset: 4, count: 4) == [0, 2, 0, 0])
        #expect(throws: ConfigurationSpaceError.self) { try EntropyDevice().readConfig(offset: 0, count: 1) }
    }

    @Test("GHT-EMB-03: GET_CONFIG is answered per window by the device; a refused window or a wrong-length answer gets the error reply and a warning, and the session goes on")
    func getConfigPerWindow() throws {
        let asked = Mutex<[(Int, Int)]>([])
        let (backEnd, log) = try Self.serve {
            ConfigurableDevice { offset, count throws(ConfigurationSpaceError) in
                asked.withLock { $0.append((offset, count)) }
                if offset >= 200 { throw .outOfRange(offset: offset, count: count, size: 200) }
                if offset == 100 { return [1] }   // a buggy device: one byte for any window
                return (0..<count).map { UInt8(truncatingIfNeeded: offset + $0) }
            }
        }
        defer { backEnd.stop() }
        let c = try RawVhostUserClient(path: backEnd.socketPath)
        defer { c.close() }
        try c.negotiate([.replyAck, .config])
        let window = VhostUserMessage.getConfig(.request(offset: 16, size: 4))
        try c.send(window)
        #expect(try c.reply(to: window) == .config(VhostUserConfig(offset: 16, data: [16, 17, 18, 19])))
        for (offset, size) in [(200, 8), (100, 4)] {
            let refused = VhostUserMessage.getConfig(.request(offset: UInt32(offset), size: size))
            try c.send(refused)
            #expect(try c.reply(to: refused) == .configUnavailable)
        }
        #expect(asked.withLock { $0.map { [$0.0, $0.1] } } == [[16, 4], [200, 8], [100, 4]])
        let warnings = log.records(of: .control).filter { $0.level == .warning }.map(\.message)
        #expect(warnings == ["GET_CONFIG refused: \(ConfigurationSpaceError.outOfRange(offset: 200, count: 8, size: 200))",
                             "GET_CONFIG refused: \(ConfigurationSpaceError.wrongLength(count: 4, returned: 1))"])
        try c.send(.getQueueNum)
        #expect(try c.reply(to: .getQueueNum) == .queueCount(1), "the session goes on")

        // A device without a configuration space answers every window with the error reply.
        let (rng, _) = try Self.serve { EntropyDevice() }
        defer { rng.stop() }
        let d = try RawVhostUserClient(path: rng.socketPath)
        defer { d.close() }
        try d.negotiate([.replyAck])
        let any = VhostUserMessage.getConfig(.request(offset: 0, size: 8))
        try d.send(any)
        #expect(try d.reply(to: any) == .configUnavailable)
    }
}
