import Synchronization
import Testing
import VirtioCore
import VirtioDevices
import VirtioSystem
import VirtioTransport
import VhostUser

/// A device whose internal state is a counter, saved as 4 little-endian bytes; a loaded counter
/// above 1000 is refused.
fileprivate final class CounterDevice: VirtioDevice {
    let deviceID: UInt32 = 4
    let deviceFeatures: VirtioFeatures = []
    let queueCount = 1
    let maxQueueSize = 256
    let counter: Atomic<UInt32>
    init(_ counter: UInt32) { self.counter = Atomic(counter) }
    func reset() {}
    func process(queue: Int, batch: inout RequestBatch) {}
    func saveState() throws -> [UInt8] {
        let c = counter.load(ordering: .relaxed)
        return (0..<4).map { UInt8(truncatingIfNeeded: c >> (8 * $0)) }
    }
    func loadState(_ state: [UInt8]) throws {
        guard state.count == 4 else { throw DeviceStateError.wrongLength }
        let c = state.enumerated().reduce(UInt32(0)) { $0 | UInt32($1.element) << (8 * $1.offset) }
        guard c <= 1000 else { throw DeviceStateError.invalidValue("counter \(c)") }
        counter.store(c, ordering: .relaxed)
    }
}

@Suite("Device state: SET_DEVICE_STATE_FD and CHECK_DEVICE_STATE", .tags(.transport))
struct DeviceStateTests {
    fileprivate static func serve(_ tag: String, _ device: CounterDevice, configuration: BackEndConfiguration = BackEndConfiguration()) throws -> (BackEnd, String) {
        let path = temporarySocketPath(tag)
        let backEnd = try BackEnd(socketPath: path, configuration: configuration) { device }
        backEnd.start()
        return (backEnd, path)
    }

    static func frontEnd(_ path: String) throws -> FrontEnd {
        var configuration = FrontEndConfiguration()
        configuration.mode = .guestPhysical
        return try FrontEnd.connect(socketPath: path, configuration: configuration)
    }

    @Test("GHT-DST-10, GHT-DST-07: the FrontEnd saves a device's state from one back-end and loads it into another; CHECK_DEVICE_STATE reports success")
    func moveBetweenBackEnds() throws {
        let source = CounterDevice(7), destination = CounterDevice(0)
        let (a, pathA) = try Self.serve("dst10a", source)
        let (b, pathB) = try Self.serve("dst10b", destination)
        defer { a.stop(); b.stop() }
        let feA = try Self.frontEnd(pathA), feB = try Self.frontEnd(pathB)
        defer { feA.close(); feB.close() }
        _ = try feA.stopQueue(0)
        let state = try feA.saveDeviceState()
        #expect(state == [7, 0, 0, 0])
        _ = try feB.stopQueue(0)
        try feB.loadDeviceState(state)
        #expect(destination.counter.load(ordering: .relaxed) == 7)
    }

    @Test("GHT-DST-04, GHT-DST-07: a state the device refuses makes CHECK_DEVICE_STATE fail and changes nothing; a device without state saves none and refuses some")
    func refusedState() throws {
        let device = CounterDevice(5)
        let (backEnd, path) = try Self.serve("dst04", device)
        defer { backEnd.stop() }
        let fe = try Self.frontEnd(path)
        defer { fe.close() }
        _ = try fe.stopQueue(0)
        for hostile: [UInt8] in [[1, 2, 3], [0xFF, 0xFF, 0, 0]] {
            #expect(throws: FrontEndError.refused(.checkDeviceState)) { try fe.loadDeviceState(hostile) }
            #expect(device.counter.load(ordering: .relaxed) == 5)
        }
        let server = try TestBackEnd("dst09")
        let plain = try FrontEnd.connect(socketPath: server.path)
        defer { plain.close() }
        _ = try plain.stopQueue(0)
        #expect(try plain.saveDeviceState() == [])
        #expect(throws: FrontEndError.refused(.checkDeviceState)) { try plain.loadDeviceState([1]) }
    }

    @Test("GHT-DST-09: a device that keeps no state saves none and refuses a non-empty one")
    func statelessDevice() throws {
        let device = ChecksumEchoDevice()
        #expect(try device.saveState() == [])
        #expect(throws: DeviceStateError.unexpectedState(byteCount: 2)) { try device.loadState([1, 2]) }
        try device.loadState([])
    }

    @Test("GHT-DST-03: SET_DEVICE_STATE_FD while a ring runs is refused (bit 8 set, status non-zero); with every ring stopped it is accepted")
    func onlyStopped() throws {
        let (backEnd, path) = try Self.serve("dst03", CounterDevice(1))
        defer { backEnd.stop() }
        let fe = try Self.frontEnd(path)
        defer { fe.close() }
        #expect(throws: FrontEndError.refused(.setDeviceStateFD)) { _ = try fe.saveDeviceState() }
        _ = try fe.stopQueue(0)
        #expect(try fe.saveDeviceState() == [1, 0, 0, 0])
    }

    @Test("GHT-DST-01: SET_DEVICE_STATE_FD or CHECK_DEVICE_STATE without DEVICE_STATE negotiated ends the session")
    func needsFeature() throws {
        for (n, message) in [VhostUserMessage.checkDeviceState, .setDeviceStateFD(VhostUserDeviceStateTransfer(direction: .save))].enumerated() {
            let server = try TestBackEnd("dst01\(n)")
            let client = try RawVhostUserClient(path: server.path)
            try client.negotiate([.replyAck])
            let pipe = try Pipe()
            try client.send(message, fds: message.fileDescriptorCount == 1 ? [pipe.writeEnd.rawValue] : [])
            #expect(try "\(server.report().end!)".contains("DEVICE_STATE"))
        }
    }

    @Test("GHT-DST-05, GHT-DST-06, GHT-DST-07: a state above the size bound, or a pipe never closed, fails CHECK_DEVICE_STATE within the bound and the session goes on; CHECK without a transfer fails")
    func bounded() throws {
        var configuration = BackEndConfiguration()
        configuration.maxDeviceStateBytes = 16
        configuration.deviceStateTimeoutMilliseconds = 200
        let (backEnd, path) = try Self.serve("dst05", CounterDevice(1), configuration: configuration)
        defer { backEnd.stop() }
        let client = try RawVhostUserClient(path: path)
        try client.negotiate([.replyAck, .deviceState])
        try client.send(.checkDeviceState)
        #expect(try client.reply(to: .checkDeviceState) == .ack(.checkDeviceState, .failure()))
        let load = VhostUserMessage.setDeviceStateFD(VhostUserDeviceStateTransfer(direction: .load))
        // Too much: 17 bytes.
        var pipe = try Pipe()
        try client.send(load, fds: [pipe.readEnd.rawValue])
        #expect(try client.reply(to: load) == .ack(.setDeviceStateFD, .success))
        pipe.readEnd.close()
        try pipe.writeEnd.writeAll([UInt8](repeating: 1, count: 17), timeoutMilliseconds: 1000)
        pipe.writeEnd.close()
        try client.send(.checkDeviceState)
        #expect(try client.reply(to: .checkDeviceState) == .ack(.checkDeviceState, .failure()))
        // Never closed: the transfer gives up after 200 ms.
        pipe = try Pipe()
        try client.send(load, fds: [pipe.readEnd.rawValue])
        #expect(try client.reply(to: load) == .ack(.setDeviceStateFD, .success))
        let started = SystemClock.monotonic.milliseconds
        try client.send(.checkDeviceState)
        #expect(try client.reply(to: .checkDeviceState) == .ack(.checkDeviceState, .failure()))
        #expect(SystemClock.monotonic.milliseconds - started < 2000)
        try client.send(.getFeatures)
        guard case .features = try client.reply(to: .getFeatures) else { throw RawVhostUserClient.Unexpected("the session ended") }
        pipe.writeEnd.close()
    }
}
