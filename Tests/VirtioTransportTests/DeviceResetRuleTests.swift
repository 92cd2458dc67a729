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

/// One split queue of a session driven by hand in guest-physical mode: the ring in pool pages
/// `page`..<`page + 3`, request `n`'s 16 bytes at page `page + 3` offset 256 n, its 64-byte
/// reply at page `page + 4` offset 256 n.
private struct ManualQueue {
    let client: RawVhostUserClient
    let index: Int
    let page: Int
    let size: Int
    let ring: SplitRing
    var driver: SplitDriverQueue
    let kick: Doorbell, call: Doorbell, err: Doorbell
    private var posted = 0

    init(_ client: RawVhostUserClient, index: Int, page: Int, size: Int = 8) throws {
        self.client = client
        self.index = index
        self.page = page
        self.size = size
        let area = { (n: Int) in client.pool.range.slice(offset: (page + n) * 4096, length: 4096) }
        ring = try SplitRing(layout: SplitRingLayout(queueSize: size)!, descriptorTable: area(0), availRing: area(1), usedRing: area(2))
        driver = SplitDriverQueue(ring: ring, features: [.version1])
        (kick, call, err) = (try Doorbell(), try Doorbell(), try Doorbell())
    }

    func user(_ n: Int) -> UInt64 { UInt64(client.pool.range.startAddress) + UInt64((page + n) * 4096) }

    /// Sends the queue's size, ring addresses (or `addresses`), base 0 and doorbells; enables it if asked.
    func configure(enable: Bool, addresses: VhostUserVringAddress? = nil) throws {
        let i = UInt32(index)
        #expect(try client.ack(.setVringNum(VhostUserVringState(index: i, num: UInt32(size)))).isSuccess)
        let address = addresses ?? VhostUserVringAddress(index: i, descriptor: user(0), used: user(2), available: user(1), log: 0)
        #expect(try client.ack(.setVringAddress(address)).isSuccess)
        #expect(try client.ack(.setVringBase(VhostUserVringState(index: i, num: 0))).isSuccess)
        #expect(try client.ack(.setVringKick(VhostUserVringFile(index: UInt8(index))), fds: [kick.fd.rawValue]).isSuccess)
        #expect(try client.ack(.setVringCall(VhostUserVringFile(index: UInt8(index))), fds: [call.fd.rawValue]).isSuccess)
        #expect(try client.ack(.setVringErr(VhostUserVringFile(index: UInt8(index))), fds: [err.fd.rawValue]).isSuccess)
        if enable { try self.enable(true) }
    }

    func enable(_ on: Bool) throws {
        #expect(try client.ack(.setVringEnable(VhostUserVringState(index: UInt32(index), num: on ? 1 : 0))).isSuccess)
    }

    /// Posts the next request (or one whose request bytes lie at guest address `readable`) and kicks.
    mutating func post(readable: UInt64? = nil) throws {
        let n = posted % 16
        let request = UInt64((page + 3) * 4096 + 256 * n)
        client.pool.range.slice(offset: Int(request), length: 16).fill(with: UInt8(truncatingIfNeeded: posted + 1))
        try driver.add(readable: [BufferSegment(address: readable ?? request, length: 16)],
                       writable: [BufferSegment(address: UInt64((page + 4) * 4096 + 256 * n), length: 64)], token: UInt64(posted))
        posted += 1
        driver.publish()
        try kick.signal()
    }

    var usedIndex: UInt16 { ring.usedRing.loadIndex() }

    /// Waits for a used-buffer notification and reaps every used buffer.
    mutating func completions() throws -> [UInt64] {
        #expect(try call.wait(timeoutMilliseconds: 3000), "queue \(index): no used-buffer notification")
        _ = try call.drain()
        var tokens: [UInt64] = []
        try driver.reapAllUsed { tokens.append($0.token) }
        return tokens
    }

    /// Waits for the error doorbell (the queue broke) and takes the signal.
    func broke() throws -> Bool {
        let rang = try err.wait(timeoutMilliseconds: 3000)
        _ = try err.drain()
        return rang
    }

    /// Whether nothing happens on the queue for `milliseconds`: no used-buffer notification, no
    /// error doorbell, and the used index stays where it was.
    func staysQuiet(milliseconds: Int32 = 300) throws -> Bool {
        let before = usedIndex
        let called = try call.wait(timeoutMilliseconds: milliseconds)
        let erred = try err.wait(timeoutMilliseconds: 0)
        return !called && !erred && usedIndex == before
    }
}

/// Negotiates VERSION_1 in guest-physical mode and walks the status to FEATURES_OK.
private func featuresOK(_ client: RawVhostUserClient) throws {
    #expect(try client.ack(.setFeatures([.version1, .vhostUserProtocolFeatures])).isSuccess)
    for s: DeviceStatus in [[.acknowledge], [.acknowledge, .driver], [.acknowledge, .driver, .featuresOK]] {
        #expect(try client.ack(.setStatus(s)).isSuccess)
    }
}

private func driverOK(_ client: RawVhostUserClient) throws {
    #expect(try client.ack(.setStatus([.acknowledge, .driver, .featuresOK, .driverOK])).isSuccess)
}

private func status(_ client: RawVhostUserClient) throws -> DeviceStatus {
    try client.send(.getStatus)
    guard case .status(let s) = try client.reply(to: .getStatus) else { throw RawVhostUserClient.Unexpected("GET_STATUS") }
    return s
}

/// A session on `server` with queues 0 and 1 (pages 0 and 8) enabled and DRIVER_OK set.
private func twoRunningQueues(_ server: TestBackEnd) throws -> (RawVhostUserClient, ManualQueue, ManualQueue) {
    let client = try session(server)
    let q0 = try ManualQueue(client, index: 0, page: 0), q1 = try ManualQueue(client, index: 1, page: 8)
    try q0.configure(enable: true)
    try q1.configure(enable: true)
    try driverOK(client)
    return (client, q0, q1)
}

/// A fresh session on `server`: negotiated, memory shared, features at FEATURES_OK.
private func session(_ server: TestBackEnd) throws -> RawVhostUserClient {
    let client = try RawVhostUserClient(path: server.path)
    try client.negotiate([.replyAck, .status, .backendRequest, .resetDevice])
    try client.shareMemory()
    try featuresOK(client)
    return client
}

/// A device whose `process` waits until the test opens the gate: a request stays inside the
/// device as long as the test wants.
final class GatedDevice: VirtioDevice, @unchecked Sendable {
    let deviceID: UInt32 = 0xFFFF
    let deviceFeatures: VirtioFeatures = []
    let queueCount = 1
    let maxQueueSize = 16
    let entered = Atomic<Bool>(false)
    let open = Atomic<Bool>(false)

    func readConfig() -> [UInt8] { [] }
    func process(queue: Int, batch: inout RequestBatch) {
        entered.store(true, ordering: .releasing)
        while !open.load(ordering: .acquiring) { usleep(1000) }
        for i in 0..<batch.count { batch.complete(i, usedLength: 0) }
    }
    func reset() {}
}

@Suite("Device reset and queue state, device side", .tags(.transport))
struct DeviceResetRuleTests {
    @Test("RST-DEV-01, TRN-M-02: SET_STATUS 0 and RESET_DEVICE return the status to 0, also from DEVICE_NEEDS_RESET, and leave every queue disabled")
    func resetClearsStatusAndEnable() throws {
        let server = try TestBackEnd("rst01")
        var (client, q0, q1) = try twoRunningQueues(server)
        try q0.post()
        #expect(try q0.completions() == [0])
        try q1.post(readable: UInt64(client.pool.size) + 0x10000)   // outside shared memory: the queue breaks
        #expect(try q1.broke())
        #expect(try status(client).contains(.deviceNeedsReset))
        #expect(try client.ack(.setStatus([])).isSuccess)
        #expect(try status(client) == [])
        // TRN-M-02: both queues, configured afresh but not enabled, stay stopped after DRIVER_OK.
        try featuresOK(client)
        var fresh = [try ManualQueue(client, index: 0, page: 16), try ManualQueue(client, index: 1, page: 24)]
        for q in fresh { try q.configure(enable: false) }
        try driverOK(client)
        for i in fresh.indices { try fresh[i].post() }
        for q in fresh { #expect(try q.staysQuiet(), "queue \(q.index) runs without being enabled after the reset") }
        for i in fresh.indices {
            try fresh[i].enable(true)
            #expect(try fresh[i].completions() == [0])
        }
        #expect(try client.ack(.resetDevice).isSuccess)
        #expect(try status(client) == [])
        client.close()
    }

    @Test("RST-DEV-02: once a reset completed, even one made while a request was inside the device, the device touches no queue and notifies nothing")
    func nothingAfterReset() throws {
        let device = GatedDevice()
        let path = temporarySocketPath("rst02")
        let backEnd = try BackEnd(socketPath: path) { device }
        backEnd.start()
        defer { backEnd.stop() }
        let client = try RawVhostUserClient(path: path)
        try client.negotiate([.replyAck, .status, .backendRequest])
        try client.shareMemory()
        try featuresOK(client)
        var q = try ManualQueue(client, index: 0, page: 0)
        try q.configure(enable: true)
        try driverOK(client)
        try q.post()
        for _ in 0..<3000 where !device.entered.load(ordering: .acquiring) { usleep(1000) }
        let entered = device.entered.load(ordering: .acquiring)
        #expect(entered, "the request reached the device")
        try client.send(.setStatus([]), needReply: true)   // the reset waits for the request
        usleep(100_000)
        device.open.store(true, ordering: .releasing)
        guard case .ack(_, let ack) = try client.reply(to: .setStatus([])) else { throw RawVhostUserClient.Unexpected("no ack") }
        #expect(ack.isSuccess)
        #expect(try status(client) == [])
        _ = try q.call.drain()   // a notification sent before the reset completed
        let used = q.usedIndex
        let usedArea = client.pool.range.slice(offset: 2 * 4096, length: 4096).withUnsafeBytes { Array($0) }
        // The driver scribbles: new requests and kicks, then an available index no device would accept.
        for _ in 0..<3 { try q.post() }
        q.ring.availRing.storeIndex(q.ring.availRing.loadIndex() &+ 100)
        try q.kick.signal()
        #expect(try q.staysQuiet(milliseconds: 400))
        #expect(q.usedIndex == used)
        #expect(client.pool.range.slice(offset: 2 * 4096, length: 4096).withUnsafeBytes { Array($0) } == usedArea, "the used ring is untouched")
        client.close()
        let report = try TestBackEndReports(backEnd).report(1)
        #expect(report.brokenQueues.isEmpty, "the scribbled ring was never read")
        #expect(report.chains == 1)
    }

    @Test("TRN-M-01: the device neither translates nor consumes a queue that is not enabled, even after DRIVER_OK and kicks")
    func nothingBeforeEnable() throws {
        let server = try TestBackEnd("trnm01")
        let client = try session(server)
        var q = try ManualQueue(client, index: 0, page: 0)
        // Ring addresses outside shared memory: a device that translated them would end the session.
        let outside = UInt64(client.pool.range.startAddress) + UInt64(client.pool.size) + 0x10000
        try q.configure(enable: false, addresses: VhostUserVringAddress(index: 0, descriptor: outside, used: outside + 0x2000,
                                                                        available: outside + 0x1000, log: 0))
        try driverOK(client)
        #expect(try status(client) == [.acknowledge, .driver, .featuresOK, .driverOK], "the session is alive and the device well")
        #expect(try client.ack(.setVringAddress(VhostUserVringAddress(index: 0, descriptor: q.user(0), used: q.user(2),
                                                                      available: q.user(1), log: 0))).isSuccess)
        try q.post()
        try q.post()
        #expect(try q.staysQuiet())
        #expect(q.ring.availRing.loadIndex() == 2 && q.usedIndex == 0)
        try q.enable(true)
        var done = try q.completions()
        while done.count < 2 { done += try q.completions() }
        #expect(done == [0, 1])
        client.close()
        #expect(try server.report(1).end == .disconnected)
    }

    @Test("QRST-DEV-01: a queue stopped by GET_VRING_BASE or SET_VRING_ENABLE 0 executes nothing more and sends no notification")
    func nothingAfterQueueReset() throws {
        let server = try TestBackEnd("qrst01")
        var (client, q0, q1) = try twoRunningQueues(server)
        try q0.post()
        try q1.post()
        #expect(try q0.completions() == [0] && q1.completions() == [0])
        try client.send(.getVringBase(VhostUserVringState(index: 0, num: 0)))
        #expect(try client.reply(to: .getVringBase(VhostUserVringState(index: 0, num: 0))) == .vringBase(VhostUserVringState(index: 0, num: 1)))
        try q1.enable(false)
        for _ in 0..<3 {
            try q0.post()
            try q1.post()
        }
        #expect(try q0.staysQuiet() && q1.staysQuiet())
        #expect(q0.usedIndex == 1 && q1.usedIndex == 1)
        #expect(try status(client) == [.acknowledge, .driver, .featuresOK, .driverOK])
        client.close()
    }

    @Test("QRST-DEV-03: a queue restarted with a smaller size and new ring addresses uses them, and never the old ring")
    func restartUsesNewConfiguration() throws {
        let server = try TestBackEnd("qrst03")
        let client = try session(server)
        var old = try ManualQueue(client, index: 0, page: 0, size: 8)
        try old.configure(enable: true)
        try driverOK(client)
        try old.post()
        #expect(try old.completions() == [0])
        try client.send(.getVringBase(VhostUserVringState(index: 0, num: 0)))
        _ = try client.reply(to: .getVringBase(VhostUserVringState(index: 0, num: 0)))
        var new = try ManualQueue(client, index: 0, page: 16, size: 4)
        try new.configure(enable: true)
        // Requests one at a time, past two laps of the 4-entry ring: a device still using
        // size 8 would read avail slots 4..7, which the driver never writes.
        for n in 0..<10 {
            try new.post()
            #expect(try new.completions() == [UInt64(n)])
        }
        try old.post()
        #expect(try old.staysQuiet(milliseconds: 200), "the old ring is not served")
        #expect(old.usedIndex == 1 && new.usedIndex == 10)
        client.close()
        #expect(try server.report(1).brokenQueues.isEmpty)
    }

    @Test("GHT-BRK-02, GHT-BRK-03: a broken queue gets no used element and no notification; the device's other queue keeps serving")
    func brokenQueueIsLeftAlone() throws {
        let server = try TestBackEnd("brk02")
        var (client, q0, q1) = try twoRunningQueues(server)
        try q1.post()
        #expect(try q1.completions() == [0])
        try q1.post(readable: UInt64(client.pool.size) + 0x10000)   // outside shared memory
        #expect(try q1.broke())
        for _ in 0..<3 { try q1.post() }
        #expect(try q1.staysQuiet())
        #expect(q1.usedIndex == 1, "nothing completed after the break, not even the good requests behind it")
        for n in 0..<5 {
            try q0.post()
            #expect(try q0.completions() == [UInt64(n)])
        }
        client.close()
        #expect(try server.report(1).brokenQueues.keys.sorted() == [1])
    }

    @Test("NTF-DEF-01: kicks with nothing new are tolerated: no completion, no notification, no error, and the queue still serves")
    func spuriousKicks() throws {
        let server = try TestBackEnd("ntf01")
        let client = try session(server)
        var q = try ManualQueue(client, index: 0, page: 0)
        try q.configure(enable: true)
        try driverOK(client)
        for _ in 0..<100 {
            try q.kick.signal()
            usleep(200)
        }
        #expect(try q.staysQuiet())
        try q.post()
        #expect(try q.completions() == [0])
        for _ in 0..<100 { try q.kick.signal() }
        #expect(try q.staysQuiet())
        #expect(q.usedIndex == 1, "no request is processed twice")
        client.close()
        #expect(try server.report(1).brokenQueues.isEmpty)
    }
}
