import Testing
import VirtioCore
import VirtioDevices
import VirtioTransport
import VirtioSystem
import VhostUser

#if canImport(Glibc)
import Glibc
#endif

/// How a front-end writes the status when it replays its setup to a restarted back-end.
enum ReplayedStatus: String, CaseIterable, Sendable, CustomTestStringConvertible {
    /// QEMU 7.2 with STATUS: FEATURES_OK alone after SET_FEATURES, the rest ORed in at the end
    /// (vhost_user_add_status), never a reset first.
    case qemu
    /// STATUS not negotiated (libvhost-user's front-ends, QEMU with an older back-end): no
    /// status message at all.
    case absent
    /// Written DRIVER_OK at once, as a front-end that restores a running device does.
    case driverOKAtOnce
    var testDescription: String { rawValue }
}

@Suite("A back-end restarted on the same socket resumes a front-end that replays its setup", .tags(.transport), .serialized)
struct BackEndRestartTests {
    static let size = 8

    /// The setup QEMU replays after a reconnect (vhost_dev_start on a fresh back-end: no RESET,
    /// SET_FEATURES, SET_MEM_TABLE, the vrings with SET_VRING_BASE = the used index, enable),
    /// over `memory`, which outlived the old back-end. Returns the new kick and call.
    static func replay(_ c: RawVhostUserClient, memory: SharedMemory, base: UInt16, status: ReplayedStatus) throws -> (kick: Doorbell, call: Doorbell) {
        var protocolFeatures: VhostUserProtocolFeatures = [.replyAck, .multiQueue]
        if status != .absent { protocolFeatures.insert(.status) }
        try c.send(.getFeatures)
        _ = try c.reply(to: .getFeatures)
        try c.send(.getProtocolFeatures)
        _ = try c.reply(to: .getProtocolFeatures)
        #expect(try c.ack(.setProtocolFeatures(protocolFeatures)).isSuccess)
        try c.send(.getQueueNum)
        _ = try c.reply(to: .getQueueNum)
        #expect(try c.ack(.setOwner).isSuccess)
        #expect(try c.ack(.setFeatures([.version1, .eventIndex, .vhostUserProtocolFeatures])).isSuccess)
        if status == .qemu { #expect(try c.ack(.setStatus([.featuresOK])).isSuccess) }
        let region = VhostUserMemoryRegion(guestAddress: 0, size: UInt64(memory.size), userAddress: UInt64(memory.range.startAddress), mmapOffset: 0)
        #expect(try c.ack(.setMemoryTable(VhostUserMemoryTable(regions: [region])), fds: [memory.fd.rawValue]).isSuccess)
        let kick = try Doorbell(), call = try Doorbell()
        let user = { (n: Int) in UInt64(memory.range.startAddress) + UInt64(n * 4096) }
        #expect(try c.ack(.setVringNum(VhostUserVringState(index: 0, num: UInt32(size)))).isSuccess)
        #expect(try c.ack(.setVringAddress(VhostUserVringAddress(index: 0, descriptor: user(0), used: user(2), available: user(1), log: 0))).isSuccess)
        #expect(try c.ack(.setVringBase(VhostUserVringState(index: 0, num: UInt32(base)))).isSuccess)
        #expect(try c.ack(.setVringKick(VhostUserVringFile(index: 0)), fds: [kick.fd.rawValue]).isSuccess)
        #expect(try c.ack(.setVringCall(VhostUserVringFile(index: 0)), fds: [call.fd.rawValue]).isSuccess)
        #expect(try c.ack(.setVringEnable(VhostUserVringState(index: 0, num: 1))).isSuccess)
        switch status {
        case .qemu, .driverOKAtOnce: #expect(try c.ack(.setStatus([.acknowledge, .driver, .featuresOK, .driverOK])).isSuccess)
        case .absent: break
        }
        return (kick, call)
    }

    /// Posts one 64-byte request (page 3 + 64·k) and waits for its echo.
    static func roundTrip(_ driver: inout SplitDriverQueue, _ memory: SharedMemory, kick: Doorbell, call: Doorbell, k: Int) throws {
        let request = memory.range.slice(offset: 3 * 4096 + 128 * (k % 16), length: 64)
        request.withUnsafeMutableBytes { for i in 0..<64 { $0[i] = UInt8(truncatingIfNeeded: k &* 31 &+ i) } }
        let reply = UInt64(3 * 4096 + 128 * (k % 16) + 64)
        try driver.add(readable: [BufferSegment(address: UInt64(3 * 4096 + 128 * (k % 16)), length: 64)],
                       writable: [BufferSegment(address: reply, length: 64)], token: UInt64(k))
        driver.publish()
        try kick.signal()
        var used: UsedBuffer?
        for _ in 0..<300 where used == nil {
            if try call.wait(timeoutMilliseconds: 10) { _ = try? call.drain() }
            used = try driver.reapUsed()
        }
        let done = try #require(used, "request \(k) not completed")
        #expect(done.token == UInt64(k) && done.writtenLength == 64)
        #expect(memory.range.slice(offset: Int(reply), length: 64).withUnsafeBytes { Array($0) }
                == request.withUnsafeBytes { Array($0) })
    }

    @Test("GHT-RCN-08, GHT-RCN-09: a restarted back-end takes QEMU's replay on a fresh session (no reset first, status as QEMU writes it, absent, or DRIVER_OK at once) and resumes the ring at the base given",
          arguments: ReplayedStatus.allCases)
    func resumesQEMUReplay(status: ReplayedStatus) throws {
        let path = temporarySocketPath("restart-\(status.rawValue)")
        let memory = try SharedMemory.create(name: "restart-guest", size: 4 * 4096)
        let layout = SplitRingLayout(queueSize: Self.size)!
        let page = { (n: Int) in memory.range.slice(offset: n * 4096, length: 4096) }
        var driver = SplitDriverQueue(ring: try SplitRing(layout: layout, descriptorTable: page(0), availRing: page(1), usedRing: page(2)),
                                      features: [.version1, .eventIndex])
        // The first back-end serves 11 requests (the ring wraps), then goes away.
        var first: BackEnd? = try BackEnd(socketPath: path) { EchoDevice(queueCount: 1, maxQueueSize: 256) }
        first?.start()
        let c1 = try RawVhostUserClient(path: path)
        var (kick, call) = try Self.replay(c1, memory: memory, base: 0, status: status)
        for k in 0..<11 { try Self.roundTrip(&driver, memory, kick: kick, call: call, k: k) }
        first?.stop()
        first = nil
        #expect(eventually { c1.isClosedByPeer() })
        // A new back-end on the same path knows nothing of the old session.
        let second = try BackEnd(socketPath: path) { EchoDevice(queueCount: 1, maxQueueSize: 256) }
        second.start()
        defer { second.stop() }
        let c2 = try RawVhostUserClient(path: path)
        defer { c2.close() }
        (kick, call) = try Self.replay(c2, memory: memory, base: 11, status: status)
        for k in 11..<30 { try Self.roundTrip(&driver, memory, kick: kick, call: call, k: k) }
        #expect(driver.outstandingCount == 0)
    }
}
