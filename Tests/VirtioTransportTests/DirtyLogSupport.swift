import Testing
import VirtioCore
import VirtioSystem
import VirtioTransport
import VhostUser

/// A queue driven by hand with a dirty log (vhost-user.rst "Migration"), as QEMU sets one up
/// for a migration: LOG_SHMFD negotiated, the log shared with SET_LOG_BASE, VHOST_F_LOG_ALL in
/// SET_FEATURES and VHOST_VRING_F_LOG in SET_VRING_ADDR. The pool is guest memory at
/// ``guestBase`` (so that a mark at the wrong address shows); in IOVA mode its first pages are
/// mapped at ``iovaBase`` and rings and buffers are named by IOVA.
///
/// Pool pages: 0 descriptors, 1 avail (driver area), 2 used (device area), 4+n request n's
/// 16 readable bytes, 8+n its writable buffer.
struct LoggedQueue {
    static let guestBase: UInt64 = 0x10_0000
    static let iovaBase: UInt64 = 0x4000_0000
    static let size = 16
    let client: RawVhostUserClient
    let iova: Bool
    let packed: Bool
    let log: SharedMemory
    var features: VirtioFeatures
    var driver: any DriverQueue
    let kick: Doorbell, call: Doorbell, err: Doorbell
    let backChannel: UnixSocket

    /// The guest-physical page number of pool page `page`.
    static func guestPage(_ page: Int) -> Int { Int(guestBase / 4096) + page }

    /// - Parameters:
    ///   - logAll: VHOST_F_LOG_ALL in the features from the start.
    ///   - vringLog: VHOST_VRING_F_LOG in SET_VRING_ADDR, with the used ring's guest address.
    ///   - logArea: the SET_LOG_BASE description (nil: no log at all).
    init(_ client: RawVhostUserClient, iova: Bool = false, packed: Bool = false, logAll: Bool = true, vringLog: Bool = true,
         logArea: VhostUserLogArea? = VhostUserLogArea(size: 4096), log: SharedMemory? = nil,
         expectLogAck: Bool = true) throws {
        self.client = client
        self.iova = iova
        self.packed = packed
        self.log = try log ?? SharedMemory.create(name: "dirty-log", size: 4096)
        try client.negotiate([.replyAck, .status, .backendRequest, .logSharedMemory, .configureMemorySlots])
        let region = VhostUserMemoryRegion(guestAddress: Self.guestBase, size: UInt64(client.pool.size),
                                           userAddress: UInt64(client.pool.range.startAddress), mmapOffset: 0)
        #expect(try client.ack(.setMemoryTable(VhostUserMemoryTable(regions: [region])), fds: [client.pool.fd.rawValue]).isSuccess)
        let (ours, theirs) = try UnixSocket.pair()
        #expect(try client.ack(.setBackEndRequestFD, fds: [theirs.fd.rawValue]).isSuccess)
        theirs.close()
        backChannel = ours
        features = [.version1, .vhostUserProtocolFeatures]
        if iova { features.insert(.accessPlatform) }
        if packed { features.insert(.ringPacked) }
        if logAll { features.insert(.vhostLogAll) }
        #expect(try client.ack(.setFeatures(features)).isSuccess)
        for s: DeviceStatus in [[.acknowledge], [.acknowledge, .driver], [.acknowledge, .driver, .featuresOK]] {
            #expect(try client.ack(.setStatus(s)).isSuccess)
        }
        if let logArea {
            try client.send(.setLogBase(logArea), fds: [self.log.fd.rawValue])
            let reply = try client.reply(to: .setLogBase(logArea))
            #expect((reply == .ack(.setLogBase, .success)) == expectLogAck, "SET_LOG_BASE answered \(reply)")
        }
        if iova {
            let update = VhostUserIOTLBMessage.update(iova: Self.iovaBase, size: 16 * 4096,
                                                      userAddress: UInt64(client.pool.range.startAddress), permission: .readWrite)
            try client.send(.iotlb(update))
            #expect(try client.u64Reply(request: VhostUserRequest.iotlbMessage.rawValue) == 0)
        }
        let page = { (n: Int) in client.pool.range.slice(offset: n * 4096, length: 4096) }
        if packed {
            let layout = PackedRingLayout(queueSize: Self.size)!
            driver = PackedDriverQueue(ring: try PackedRing(layout: layout, descriptorRing: page(0), driverEventArea: page(1), deviceEventArea: page(2)),
                                       features: [.version1, .ringPacked])
        } else {
            let layout = SplitRingLayout(queueSize: Self.size)!
            driver = SplitDriverQueue(ring: try SplitRing(layout: layout, descriptorTable: page(0), availRing: page(1), usedRing: page(2)),
                                      features: [.version1])
        }
        kick = try Doorbell()
        call = try Doorbell()
        err = try Doorbell()
        try client.configureQueue(size: Self.size, address: ringAddress(vringLog: vringLog), base: packed ? 0x8000_8000 : 0,
                                  kick: kick, call: call, err: err)
    }

    /// Where pool page `n` is for the device: a guest-physical address or an IOVA.
    func address(page n: Int) -> UInt64 { iova ? Self.iovaBase + UInt64(n * 4096) : Self.guestBase + UInt64(n * 4096) }

    /// The ring's SET_VRING_ADDR: user addresses (or IOVAs), the used ring's guest address as
    /// `log_guest_addr`.
    func ringAddress(vringLog: Bool) -> VhostUserVringAddress {
        let ring = { (n: Int) in iova ? address(page: n) : UInt64(client.pool.range.startAddress) + UInt64(n * 4096) }
        return VhostUserVringAddress(index: 0, flags: vringLog ? .log : [], descriptor: ring(0), used: ring(2), available: ring(1),
                                     log: vringLog ? Self.guestBase + 2 * 4096 : 0)
    }

    /// SET_VRING_ENABLE 1 and DRIVER_OK: the queue starts.
    func driverOK() throws {
        #expect(try client.ack(.setVringEnable(VhostUserVringState(index: 0, num: 1))).isSuccess)
        #expect(try client.ack(.setStatus([.acknowledge, .driver, .featuresOK, .driverOK])).isSuccess)
    }

    /// Posts request `n` (16 readable bytes in page 4+n, `writable` bytes at page 8+n), kicks,
    /// waits for its completion and reaps it.
    mutating func roundTrip(_ n: Int, writable: Int = 64) throws {
        try post(n, writable: writable)
        #expect(try call.wait(timeoutMilliseconds: 3000), "request \(n) completed")
        _ = try call.drain()
        #expect(try driver.reapUsed()?.token == UInt64(n))
    }

    mutating func post(_ n: Int, writable: Int = 64) throws {
        client.pool.range.slice(offset: (4 + n) * 4096, length: 16).fill(with: UInt8(n))
        _ = try driver.add(readable: [BufferSegment(address: address(page: 4 + n), length: 16)],
                           writable: [BufferSegment(address: address(page: 8 + n), length: UInt32(writable))], token: UInt64(n))
        driver.publish()
        try kick.signal()
    }

    /// The guest pages whose bit is set in the log.
    func markedPages() -> Set<Int> {
        var pages: Set<Int> = []
        log.range.withUnsafeBytes { bytes in
            for (i, byte) in bytes.enumerated() where byte != 0 {
                for bit in 0..<8 where byte & (1 << bit) != 0 { pages.insert(i * 8 + bit) }
            }
        }
        return pages
    }

    /// Clears the log, as QEMU does when it syncs it.
    func clearLog() { log.range.fill(with: 0) }
}

extension RawVhostUserClient {
    /// Configures queue `address.index` as QEMU does before enabling it: size, addresses, base,
    /// kick, call and err, each acknowledged.
    func configureQueue(size: Int, address: VhostUserVringAddress, base: UInt32, kick: Doorbell, call: Doorbell, err: Doorbell) throws {
        let q = address.index
        #expect(try ack(.setVringNum(VhostUserVringState(index: q, num: UInt32(size)))).isSuccess)
        #expect(try ack(.setVringAddress(address)).isSuccess)
        #expect(try ack(.setVringBase(VhostUserVringState(index: q, num: base))).isSuccess)
        #expect(try ack(.setVringKick(VhostUserVringFile(index: UInt8(q))), fds: [kick.fd.rawValue]).isSuccess)
        #expect(try ack(.setVringCall(VhostUserVringFile(index: UInt8(q))), fds: [call.fd.rawValue]).isSuccess)
        #expect(try ack(.setVringErr(VhostUserVringFile(index: UInt8(q))), fds: [err.fd.rawValue]).isSuccess)
    }
}
