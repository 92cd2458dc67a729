import Synchronization
import Testing
import VirtioCore
import VirtioDevices
import VirtioTransport

#if canImport(Glibc)
import Glibc
#endif
import VirtioSystem
import VhostUser

/// A device of any type and queue count that fills each chain's writable part with one byte
/// (0xA0 + the queue index): what the transport does for a device must not depend on its type.
private final class FillDevice: VirtioDevice {
    let deviceID: UInt32
    let deviceFeatures: VirtioFeatures = []
    let queueCount: Int
    let maxQueueSize = 256

    init(deviceID: UInt32, queueCount: Int) {
        self.deviceID = deviceID
        self.queueCount = queueCount
    }

    func readConfig() -> [UInt8] { [] }
    func reset() {}

    func process(queue: Int, batch: inout RequestBatch) {
        for i in 0..<batch.count {
            var writer = batch.writer(i)
            _ = writer.produce(upTo: writer.capacity) { piece in
                piece.initializeMemory(as: UInt8.self, repeating: 0xA0 + UInt8(queue))
                return piece.count
            }
            batch.complete(i, with: writer)
        }
    }
}

/// A vhost-user device type QEMU 7.2 can attach, as the back-end sees it.
struct AttachedDevice: Sendable, CustomTestStringConvertible {
    let name: String
    let deviceID: UInt32
    /// The queues QEMU hands to the back-end.
    let queues: Int
    var testDescription: String { "vhost-user-\(name)" }

    static let qemu72: [AttachedDevice] = [
        .init(name: "rng", deviceID: 4, queues: 1), .init(name: "i2c", deviceID: 34, queues: 1),
        .init(name: "gpio", deviceID: 41, queues: 2), .init(name: "vsock", deviceID: 19, queues: 2),
        .init(name: "input", deviceID: 18, queues: 2), .init(name: "fs", deviceID: 26, queues: 2),
        .init(name: "gpu", deviceID: 16, queues: 2), .init(name: "scsi", deviceID: 8, queues: 3),
        .init(name: "blk", deviceID: 2, queues: 1), .init(name: "net", deviceID: 1, queues: 2),
    ]
}

@Suite("Ring start: what starts a queue (vhost-user.rst ring states)", .tags(.transport))
struct RingStartTests {
    static let ringSize = 4   // QEMU 7.2's vhost-user-rng queue

    /// Replays the messages QEMU 7.2's vhost-user-rng-pci sends from connect to a running device
    /// (recorded with `interop.py --scenario rng --trace`), for `queues` queues: SET_STATUS
    /// reaches FEATURES_OK and never DRIVER_OK. Returns the driver side of each queue, each with
    /// one 64-byte writable request posted and kicked.
    static func startLikeQEMU72(_ c: RawVhostUserClient, queues: Int) throws -> [(SplitDriverQueue, Doorbell)] {
        try c.send(.getFeatures)
        _ = try c.reply(to: .getFeatures)
        try c.send(.getProtocolFeatures)
        _ = try c.reply(to: .getProtocolFeatures)
        try c.send(.setProtocolFeatures([.multiQueue, .replyAck, .backendRequest, .resetDevice, .configureMemorySlots, .status]))
        try c.send(.getQueueNum)
        #expect(try c.reply(to: .getQueueNum) == .queueCount(UInt64(queues)))
        try c.send(.getMaxMemorySlots)
        _ = try c.reply(to: .getMaxMemorySlots)
        let (ours, theirs) = try UnixSocket.pair()
        defer { ours.close() }
        #expect(try c.ack(.setBackEndRequestFD, fds: [theirs.fd.rawValue]).isSuccess)
        theirs.close()
        try c.send(.setOwner)
        try c.send(.getFeatures)
        _ = try c.reply(to: .getFeatures)
        var calls: [Doorbell] = []
        for q in 0..<queues {
            calls.append(try Doorbell())
            let err = try Doorbell()
            try c.send(.setVringCall(VhostUserVringFile(index: UInt8(q))), fds: [calls[q].fd.rawValue])
            try c.send(.setVringErr(VhostUserVringFile(index: UInt8(q))), fds: [err.fd.rawValue])
        }
        let features: VirtioFeatures = [.indirectDescriptors, .eventIndex, .vhostUserProtocolFeatures, .version1]
        try c.send(.setFeatures(features))
        try c.send(.getStatus)
        #expect(try c.reply(to: .getStatus) == .status([]))
        try c.send(.setStatus([.featuresOK]))
        let region = VhostUserMemoryRegion(guestAddress: 0, size: UInt64(c.pool.size), userAddress: UInt64(c.pool.range.startAddress), mmapOffset: 0)
        #expect(try c.ack(.addMemoryRegion(region), fds: [c.pool.fd.rawValue]).isSuccess)
        var drivers: [(SplitDriverQueue, Doorbell)] = []
        var kicks: [Doorbell] = []
        let layout = SplitRingLayout(queueSize: ringSize)!
        for q in 0..<queues {
            // Queue q: ring in pages 4q..<4q+3, its request's writable buffer in page 4q+3.
            let page = { (n: Int) in c.pool.range.slice(offset: (4 * q + n) * 4096, length: 4096) }
            let user = { (n: Int) in UInt64(c.pool.range.startAddress) + UInt64((4 * q + n) * 4096) }
            let driver = SplitDriverQueue(ring: try SplitRing(layout: layout, descriptorTable: page(0), availRing: page(1), usedRing: page(2)),
                                          features: [.version1, .eventIndex])
            kicks.append(try Doorbell())
            try c.send(.setVringNum(VhostUserVringState(index: UInt32(q), num: UInt32(ringSize))))
            try c.send(.setVringBase(VhostUserVringState(index: UInt32(q), num: 0)))
            try c.send(.setVringAddress(VhostUserVringAddress(index: UInt32(q), descriptor: user(0), used: user(2), available: user(1), log: 0)))
            try c.send(.setVringKick(VhostUserVringFile(index: UInt8(q))), fds: [kicks[q].fd.rawValue])
            drivers.append((driver, calls[q]))
        }
        for q in 0..<queues { try c.send(.setVringEnable(VhostUserVringState(index: UInt32(q), num: 1))) }
        for q in 0..<queues {
            // QEMU replaces the call descriptor once the guest notifier is set up.
            calls[q] = try Doorbell()
            try c.send(.setVringCall(VhostUserVringFile(index: UInt8(q))), fds: [calls[q].fd.rawValue])
            drivers[q].1 = calls[q]
        }
        // Every message handled (a round trip), then the guest's driver kicks each queue.
        try c.send(.getStatus)
        #expect(try c.reply(to: .getStatus) == .status([.featuresOK]), "the front-end never sent DRIVER_OK")
        for q in 0..<queues {
            try drivers[q].0.add(readable: [], writable: [BufferSegment(address: UInt64((4 * q + 3) * 4096), length: 64)], token: UInt64(q))
            drivers[q].0.publish()
            try kicks[q].signal()
        }
        return drivers
    }

    @Test("GHT-VU-24: QEMU 7.2's start sequence without DRIVER_OK (vhost-user-rng and the other generic devices) runs every queue",
          arguments: AttachedDevice.qemu72)
    func startsWithoutDriverOK(_ device: AttachedDevice) throws {
        let path = temporarySocketPath("ringstart-\(device.name)")
        let backEnd = try BackEnd(socketPath: path) { FillDevice(deviceID: device.deviceID, queueCount: device.queues) }
        backEnd.start()
        defer { backEnd.stop() }
        let client = try RawVhostUserClient(path: path)
        defer { client.close() }
        var drivers = try Self.startLikeQEMU72(client, queues: device.queues)
        for q in drivers.indices {
            #expect(try drivers[q].1.wait(timeoutMilliseconds: 3000), "queue \(q): no used-buffer notification")
            let used = try #require(try drivers[q].0.reapUsed(), "queue \(q) completed nothing")
            #expect(used.token == UInt64(q) && used.writtenLength == 64)
            #expect(client.pool.range.slice(offset: (4 * q + 3) * 4096, length: 64).withUnsafeBytes { Array($0) }
                    == Array(repeating: 0xA0 + UInt8(q), count: 64))
        }
    }

    @Test("GHT-VU-24: a queue that SET_VRING_ENABLE 1 should have started and that is held back is logged with the reason, once")
    func heldBackIsLogged() throws {
        let log = CollectingLogSink()
        var configuration = BackEndConfiguration()
        configuration.logSink = log
        let path = temporarySocketPath("ringheld")
        let backEnd = try BackEnd(socketPath: path, configuration: configuration) { FillDevice(deviceID: 4, queueCount: 1) }
        backEnd.start()
        defer { backEnd.stop() }
        let c = try RawVhostUserClient(path: path)
        defer { c.close() }
        try c.negotiate([.replyAck, .status])
        try c.shareMemory()
        #expect(try c.ack(.setFeatures([.version1, .vhostUserProtocolFeatures])).isSuccess)
        let kick = try Doorbell()
        #expect(try c.ack(.setVringNum(VhostUserVringState(index: 0, num: UInt32(Self.ringSize)))).isSuccess)
        #expect(try c.ack(.setVringKick(VhostUserVringFile(index: 0)), fds: [kick.fd.rawValue]).isSuccess)
        #expect(log.records(of: .queueHeldBack).isEmpty, "a kick on a ring not yet enabled is the usual order")
        for _ in 0..<2 { #expect(try c.ack(.setVringEnable(VhostUserVringState(index: 0, num: 1))).isSuccess) }
        let held = log.records(of: .queueHeldBack).map { "session \($0.session ?? 0): \($0.message)" }
        #expect(held == ["session 1: queue 0 configured but held back: no ring addresses (SET_VRING_ADDR)"])
        let user = { (n: Int) in UInt64(c.pool.range.startAddress) + UInt64(n * 4096) }
        #expect(try c.ack(.setVringAddress(VhostUserVringAddress(index: 0, descriptor: user(0), used: user(2), available: user(1), log: 0))).isSuccess)
        #expect(log.records(of: .queueStarted).contains { $0.message.contains("queue 0 started") })
    }
}
