import Testing
import VirtioCore
import VirtioGrants
import VirtioTransport

#if canImport(Glibc)
import Glibc
#endif
import VirtioSystem
import VhostUser

/// A queue driven by hand over IOVAs (vhost-user IOMMU mode): ACCESS_PLATFORM without a grant
/// table; the client's IOTLB maps `iovaBase + page * 4096` to its pool pages, and the rings and
/// buffers are named by IOVA. Misses come back on the back-end channel (`misses`).
struct IOVAHandDrivenQueue {
    static let iovaBase: UInt64 = 0x4000_0000
    static let mappedPages = 16
    static let size = 16
    let client: RawVhostUserClient
    var driver: SplitDriverQueue
    let kick: Doorbell, call: Doorbell, err: Doorbell
    let misses: VhostUserChannel

    static func iova(page: Int) -> UInt64 { iovaBase + UInt64(page * 4096) }

    /// Negotiates IOVA mode, shares the pool, maps the first pages and configures queue 0, not
    /// enabled yet; the status stops at FEATURES_OK.
    init(_ client: RawVhostUserClient) throws {
        self.client = client
        try client.negotiate([.replyAck, .status, .backendRequest])
        try client.shareMemory()
        let (ours, theirs) = try UnixSocket.pair()
        try ours.setReceiveTimeout(milliseconds: 3000)
        #expect(try client.ack(.setBackEndRequestFD, fds: [theirs.fd.rawValue]).isSuccess)
        theirs.close()
        misses = VhostUserChannel(socket: ours)
        #expect(try client.ack(.setFeatures([.version1, .vhostUserProtocolFeatures, .accessPlatform])).isSuccess)
        for s: DeviceStatus in [[.acknowledge], [.acknowledge, .driver], [.acknowledge, .driver, .featuresOK]] {
            #expect(try client.ack(.setStatus(s)).isSuccess)
        }
        try Self.map(client)
        let layout = SplitRingLayout(queueSize: Self.size)!
        let page = { (n: Int) in client.pool.range.slice(offset: n * 4096, length: 4096) }
        driver = SplitDriverQueue(ring: try SplitRing(layout: layout, descriptorTable: page(0), availRing: page(1), usedRing: page(2)),
                                  features: [.version1])
        kick = try Doorbell()
        call = try Doorbell()
        err = try Doorbell()
        try client.configureQueue(size: Self.size, address: VhostUserVringAddress(index: 0, descriptor: Self.iova(page: 0), used: Self.iova(page: 2),
                                                                                available: Self.iova(page: 1), log: 0),
                                  base: 0, kick: kick, call: call, err: err)
    }

    /// IOTLB update: the first ``mappedPages`` pages of the pool at ``iovaBase``.
    static func map(_ client: RawVhostUserClient) throws {
        let update = VhostUserIOTLBMessage.update(iova: iovaBase, size: UInt64(mappedPages * 4096),
                                                  userAddress: UInt64(client.pool.range.startAddress), permission: .readWrite)
        try client.send(.iotlb(update))
        #expect(try client.u64Reply(request: VhostUserRequest.iotlbMessage.rawValue) == 0)
    }

    /// Posts request `n` (16 bytes of `n` in page 4+n, a 64-byte reply in page 8+n); kicks unless told not to.
    mutating func post(_ n: Int, kick doKick: Bool = true) throws {
        client.pool.range.slice(offset: (4 + n) * 4096, length: 16).fill(with: UInt8(n))
        try driver.add(readable: [BufferSegment(address: Self.iova(page: 4 + n), length: 16)],
                       writable: [BufferSegment(address: Self.iova(page: 8 + n), length: 64)], token: UInt64(n))
        driver.publish()
        if doKick { try kick.signal() }
    }

    /// What QEMU 7.2 sends when the driver sets DRIVER_OK: SET_VRING_ENABLE 1 (the queue starts,
    /// GHT-VU-24), then the status.
    func driverOK() throws {
        #expect(try client.ack(.setVringEnable(VhostUserVringState(index: 0, num: 1))).isSuccess)
        #expect(try client.ack(.setStatus([.acknowledge, .driver, .featuresOK, .driverOK])).isSuccess)
    }

    /// The IOVA of the next IOTLB miss the back-end reports.
    func nextMiss() throws -> UInt64 {
        let received = try misses.receive()
        #expect(received.frame.header.request == VhostUserBackEndRequest.iotlbMessage.rawValue)
        // struct vhost_iotlb_msg: the IOVA is its first 8 bytes, little-endian.
        return received.frame.payload.prefix(8).reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
    }
}

@Suite("Memory lifetime: no translation outlives the memory it points into", .tags(.transport))
struct MemoryLifetimeTests {
    @Test("GHT-LIFE-01: IOTLB ranges are bound again through a new memory table: the same file at the same address keeps serving, through the new mapping")
    func iotlbSurvivesTheSameTable() throws {
        let server = try TestBackEnd("life01a")
        var q = try IOVAHandDrivenQueue(try RawVhostUserClient(path: server.path))
        // The same table again: the back-end maps the file anew and unmaps its old mapping; the
        // IOTLB range must follow (before GHT-LIFE-01 it kept the old mapping's address).
        try q.client.shareMemory()
        try q.driverOK()
        try q.post(1)
        #expect(try q.call.wait(timeoutMilliseconds: 3000))
        let used = try #require(try q.driver.reapUsed())
        #expect(used.token == 1 && used.writtenLength == 8 + 16)
        #expect(q.client.pool.range.slice(offset: 9 * 4096 + 8, length: 16).withUnsafeBytes { Array($0) } == Array(repeating: 1, count: 16))
    }

    @Test("GHT-LIFE-01: IOTLB ranges whose memory left the table are dropped: the queue's rings miss instead of reaching unmapped memory")
    func iotlbDroppedWithItsMemory() throws {
        let server = try TestBackEnd("life01b")
        let client = try RawVhostUserClient(path: server.path)
        var q = try IOVAHandDrivenQueue(client)
        // A table naming another file at other addresses: the mapped IOVAs point nowhere now.
        let other = try SharedMemory.create(name: "other-pool", size: 16 * 4096)
        let region = VhostUserMemoryRegion(guestAddress: 0, size: UInt64(other.size), userAddress: UInt64(other.range.startAddress), mmapOffset: 0)
        #expect(try client.ack(.setMemoryTable(VhostUserMemoryTable(regions: [region])), fds: [other.fd.rawValue]).isSuccess)
        try q.post(1, kick: false)
        try q.driverOK()
        #expect(try q.nextMiss() & ~0xFFF == IOVAHandDrivenQueue.iova(page: 0), "the descriptor table is asked for again")
        try q.kick.signal()
        #expect(try !q.call.wait(timeoutMilliseconds: 200), "nothing completes through the dropped range")
        // The front-end maps the IOVAs into the new memory: the queue starts there.
        let update = VhostUserIOTLBMessage.update(iova: IOVAHandDrivenQueue.iovaBase, size: 16 * 4096,
                                                  userAddress: UInt64(other.range.startAddress), permission: .readWrite)
        try client.send(.iotlb(update))
        #expect(try client.u64Reply(request: VhostUserRequest.iotlbMessage.rawValue) == 0)
        #expect(try !q.err.wait(timeoutMilliseconds: 200), "a zeroed ring in the new memory is empty, not malformed")
        client.close()
        #expect(try server.report(1).brokenQueues.isEmpty)
    }

    @Test("GHT-LIFE-02: an IOTLB invalidation covering a running queue's ring areas stops the queue; it resumes where it stopped when they are mapped again")
    func ringAreasFollowInvalidation() throws {
        let server = try TestBackEnd("life02")
        var q = try IOVAHandDrivenQueue(try RawVhostUserClient(path: server.path))
        try q.driverOK()
        try q.post(1)
        #expect(try q.call.wait(timeoutMilliseconds: 3000))
        _ = try q.call.drain()
        #expect(try q.driver.reapUsed()?.token == 1)
        // The whole space goes (QEMU's size 0): the rings are no longer the device's to reach.
        try q.client.send(.iotlb(.invalidate(iova: 0, size: 0)))
        #expect(try q.client.u64Reply(request: VhostUserRequest.iotlbMessage.rawValue) == 0)
        try q.post(2)
        #expect(try !q.call.wait(timeoutMilliseconds: 300), "no chain is consumed through invalidated ring areas")
        #expect(try q.driver.reapUsed() == nil)
        #expect(try q.nextMiss() & ~0xFFF == IOVAHandDrivenQueue.iova(page: 0), "the back-end asks for the rings again")
        try IOVAHandDrivenQueue.map(q.client)
        #expect(try q.call.wait(timeoutMilliseconds: 3000), "the queue resumed and served the waiting chain")
        let used = try #require(try q.driver.reapUsed())
        #expect(used.token == 2 && used.writtenLength == 8 + 16)
        #expect(try !q.err.wait(timeoutMilliseconds: 0))
    }

    @Test("GHT-LIFE-02: an IOTLB update elsewhere, or mapping the ring areas to the same bytes again, leaves a running queue alone")
    func unrelatedUpdatesKeepTheQueue() throws {
        let server = try TestBackEnd("life02b")
        var q = try IOVAHandDrivenQueue(try RawVhostUserClient(path: server.path))
        try q.driverOK()
        try IOVAHandDrivenQueue.map(q.client)
        try q.client.send(.iotlb(.invalidate(iova: 0x9000_0000, size: 0x1000)))
        #expect(try q.client.u64Reply(request: VhostUserRequest.iotlbMessage.rawValue) == 0)
        try q.post(1)
        #expect(try q.call.wait(timeoutMilliseconds: 3000))
        #expect(try q.driver.reapUsed()?.token == 1)
        q.client.close()
        let log = try server.report(1)
        #expect(log.brokenQueues.isEmpty && log.chains == 1)
    }
}
