import Synchronization
import Testing
import VirtioCore
import VirtioDevices
import VirtioGrants
import VirtioTransport

#if canImport(Glibc)
import Glibc
#endif
import VirtioSystem
import VhostUser

/// A back-end serving the checksum device on a fresh socket, for one test.
final class TestBackEnd {
    let path: String
    let backEnd: BackEnd

    init(_ tag: String, configuration: BackEndConfiguration = BackEndConfiguration()) throws {
        path = temporarySocketPath(tag)
        backEnd = try BackEnd(socketPath: path, configuration: configuration) { ChecksumEchoDevice(queueCount: 2) }
        backEnd.start()
    }

    deinit { backEnd.stop() }

    /// The report of the `n`th session (1-based) once it ended, waiting up to 3 s.
    func report(_ n: Int = 1) throws -> SessionReport {
        for _ in 0..<600 {
            if let r = backEnd.reports.first(where: { $0.id == n }) { return r }
            usleep(5000)
        }
        throw RawVhostUserClient.Unexpected("session \(n) did not end")
    }
}

/// A front-end mistake and the words the back-end's report must give for it.
struct ViolationCase: Sendable, CustomTestStringConvertible {
    let name: String
    let reason: String
    let act: @Sendable (RawVhostUserClient) throws -> Void
    var testDescription: String { name }
}

@Suite("Session rules: what a back-end does with each front-end mistake", .tags(.transport))
struct SessionRuleTests {
    static let violations: [ViolationCase] = [
        ViolationCase(name: "a payload of the wrong size", reason: "wrongPayloadSize") { c in
            try c.negotiate()
            try c.sendRaw(request: 8, payload: [16, 0, 0, 0])   // SET_VRING_NUM takes 8 bytes
        },
        ViolationCase(name: "an unknown request", reason: "9999") { c in
            try c.negotiate()
            try c.sendRaw(request: 9999, payload: [])
        },
        ViolationCase(name: "two descriptors where one is expected", reason: "wrongFileDescriptorCount") { c in
            try c.negotiate()
            let a = try Doorbell(), b = try Doorbell()
            try c.send(.setVringKick(VhostUserVringFile(index: 0)), fds: [a.fd.rawValue, b.fd.rawValue])
        },
        ViolationCase(name: "fewer descriptors than memory regions", reason: "wrongFileDescriptorCount") { c in
            try c.negotiate()
            let r0 = VhostUserMemoryRegion(guestAddress: 0, size: 4096, userAddress: 0x10000, mmapOffset: 0)
            let r1 = VhostUserMemoryRegion(guestAddress: 0x100000, size: 4096, userAddress: 0x20000, mmapOffset: 4096)
            try c.send(.setMemoryTable(VhostUserMemoryTable(regions: [r0, r1])), fds: [c.pool.fd.rawValue])
        },
        ViolationCase(name: "overlapping memory regions", reason: "overlappingMemoryRegions") { c in
            try c.negotiate()
            let r0 = VhostUserMemoryRegion(guestAddress: 0, size: 8192, userAddress: 0x10000, mmapOffset: 0)
            let r1 = VhostUserMemoryRegion(guestAddress: 4096, size: 8192, userAddress: 0x80000, mmapOffset: 0)
            // Encoded by hand: the codec refuses to send such a table.
            try c.sendRaw(request: 5, payload: VhostUserMemoryTable(regions: [r0, r1]).encoded(), fds: [c.pool.fd.rawValue, c.pool.fd.rawValue])
        },
        ViolationCase(name: "memory regions overlapping in user addresses, added one by one", reason: "memory regions") { c in
            try c.negotiate()
            let r0 = VhostUserMemoryRegion(guestAddress: 0, size: 8192, userAddress: 0x10000, mmapOffset: 0)
            let r1 = VhostUserMemoryRegion(guestAddress: 0x100000, size: 8192, userAddress: 0x11000, mmapOffset: 0)
            #expect(try c.ack(.addMemoryRegion(r0), fds: [c.pool.fd.rawValue]).isSuccess)
            try c.send(.addMemoryRegion(r1), fds: [c.pool.fd.rawValue])
        },
        ViolationCase(name: "a memory region past the end of its file", reason: "mapped") { c in
            try c.negotiate()
            let r = VhostUserMemoryRegion(guestAddress: 0, size: UInt64(c.pool.size), userAddress: 0x10000, mmapOffset: 4096)
            try c.send(.setMemoryTable(VhostUserMemoryTable(regions: [r])), fds: [c.pool.fd.rawValue])
        },
        ViolationCase(name: "ring addresses outside shared memory", reason: "rings cannot be used") { c in
            try c.negotiate([.replyAck, .status])
            try c.shareMemory()
            try c.send(.setFeatures([.version1, .vhostUserProtocolFeatures]))
            let outside = UInt64(c.pool.range.startAddress) + UInt64(c.pool.size) + 0x10000
            try c.send(.setVringNum(VhostUserVringState(index: 0, num: 16)))
            try c.send(.setVringAddress(VhostUserVringAddress(index: 0, descriptor: outside, used: outside + 0x1000, available: outside + 0x800, log: 0)))
            let kick = try Doorbell()
            try c.send(.setVringKick(VhostUserVringFile(index: 0)), fds: [kick.fd.rawValue])
            try c.send(.setVringEnable(VhostUserVringState(index: 0, num: 1)))   // the ring starts here (GHT-VU-24)
        },
        ViolationCase(name: "GHT-PKD-08: a packed ring base naming a slot beyond the queue", reason: "beyond the queue size") { c in
            try c.negotiate([.replyAck, .status])
            try c.shareMemory()
            try c.send(.setFeatures([.version1, .ringPacked, .vhostUserProtocolFeatures]))
            let base = UInt64(c.pool.range.startAddress)
            try c.send(.setVringNum(VhostUserVringState(index: 0, num: 12)))
            try c.send(.setVringAddress(VhostUserVringAddress(index: 0, descriptor: base, used: base + 0x1004, available: base + 0x1000, log: 0)))
            try c.send(.setVringBase(VhostUserVringState(index: 0, num: 0x8000_800C)))   // used slot 0, avail slot 12 of 12
            let kick = try Doorbell()
            try c.send(.setVringKick(VhostUserVringFile(index: 0)), fds: [kick.fd.rawValue])
            try c.send(.setVringEnable(VhostUserVringState(index: 0, num: 1)))   // the ring starts here (GHT-VU-24)
        },
        ViolationCase(name: "GHT-PKD-08: a packed base left in place when the ring starts as a split one", reason: "beyond 16 bits") { c in
            try c.negotiate([.replyAck, .status])
            try c.shareMemory()
            try c.send(.setFeatures([.version1, .ringPacked, .vhostUserProtocolFeatures]))
            try c.send(.setVringBase(VhostUserVringState(index: 0, num: 0x8000_8000)))
            try c.send(.setFeatures([.version1, .vhostUserProtocolFeatures]))
            let base = UInt64(c.pool.range.startAddress)
            try c.send(.setVringNum(VhostUserVringState(index: 0, num: 16)))
            try c.send(.setVringAddress(VhostUserVringAddress(index: 0, descriptor: base, used: base + 0x1000, available: base + 0x800, log: 0)))
            let kick = try Doorbell()
            try c.send(.setVringKick(VhostUserVringFile(index: 0)), fds: [kick.fd.rawValue])
            try c.send(.setVringEnable(VhostUserVringState(index: 0, num: 1)))   // the ring starts here (GHT-VU-24)
        },
        ViolationCase(name: "TRN-M-04: a split queue size that is not a power of 2", reason: "not a power of 2") { c in
            try c.negotiate()
            try c.send(.setFeatures([.version1, .vhostUserProtocolFeatures]))
            try c.send(.setVringNum(VhostUserVringState(index: 0, num: 12)))
        },
        ViolationCase(name: "a queue index past the device's queues", reason: "does not exist") { c in
            try c.negotiate()
            try c.send(.setVringNum(VhostUserVringState(index: 7, num: 16)))
        },
        ViolationCase(name: "a request before SET_OWNER", reason: "before SET_OWNER") { c in
            try c.send(.setVringNum(VhostUserVringState(index: 0, num: 16)))
        },
        ViolationCase(name: "SET_OWNER twice", reason: "twice") { c in
            try c.negotiate()
            try c.send(.setOwner)
        },
        ViolationCase(name: "a queue size that is not a power of 2", reason: "power of 2") { c in
            try c.negotiate()
            try c.send(.setVringNum(VhostUserVringState(index: 0, num: 24)))
        },
        ViolationCase(name: "GHT-VUG-02: SET_GRANT_TABLE without GRANT_TABLE negotiated", reason: "GHT-VUG-02") { c in
            try c.negotiate([.replyAck, .status])
            try c.shareMemory()
            try c.send(.setGrantTable(c.grantTableInfo()), needReply: true, fds: [c.table.fd.rawValue])
        },
        ViolationCase(name: "GHT-VUG-03: a refused SET_GRANT_TABLE without NEED_REPLY", reason: "GHT-VUG-03") { c in
            try c.negotiate()
            try c.shareMemory()
            try c.send(.setGrantTable(c.grantTableInfo(framesGuestAddress: 0x4000_0000)), fds: [c.table.fd.rawValue])
        },
        ViolationCase(name: "GHT-VU-22: an unsupported request whose reply body cannot be given (CREATE_CRYPTO_SESSION)", reason: "not supported") { c in
            try c.negotiate()
            try c.sendRaw(request: 26, payload: [UInt8](repeating: 0, count: 24))
        },
    ]

    @Test("GHT-VU-25: a legal queue size above the device's maximum (256 here) ends the session with a violation that names the maximum, not a bad size")
    func queueSizeAboveMaximum() throws {
        let server = try TestBackEnd("maxsize")
        let client = try RawVhostUserClient(path: server.path)
        try client.negotiate()
        try client.send(.setFeatures([.version1, .vhostUserProtocolFeatures]))
        try client.send(.setVringNum(VhostUserVringState(index: 0, num: 1024)))
        #expect(client.isClosedByPeer())
        let report = try server.report(1)
        guard case .violation(let reason) = report.end else {
            Issue.record("session ended \(String(describing: report.end)), not by a violation")
            return
        }
        #expect(reason.contains("above the device's maximum of 256") && !reason.contains("power of 2"), "reason: \(reason)")
    }

    @Test("GHT-VU-21, GHT-CTL-01, GHT-CTL-03: the back-end closes the connection on a violation, reports why, and keeps serving", arguments: violations)
    func violation(_ v: ViolationCase) throws {
        let server = try TestBackEnd("violation")
        let client = try RawVhostUserClient(path: server.path)
        try v.act(client)
        #expect(client.isClosedByPeer(), "the connection is closed")
        let report = try server.report(1)
        guard case .violation(let reason) = report.end else {
            Issue.record("session ended \(String(describing: report.end)), not by a violation")
            return
        }
        #expect(reason.contains(v.reason), "reason: \(reason)")
        // The back-end serves the next front-end.
        let next = try FrontEnd.connect(socketPath: server.path)
        try EndpointTests.stream(next, count: 20)
        next.close()
    }

    @Test("GHT-VU-23: SET_STATUS as QEMU 7.2 sends it (FEATURES_OK alone, then ACKNOWLEDGE|DRIVER|DRIVER_OK ORed in) is accepted; DRIVER_OK without FEATURES_OK still ends the session")
    func frontEndStatusSummary() throws {
        let server = try TestBackEnd("vu23")
        let client = try RawVhostUserClient(path: server.path)
        try client.negotiate()
        try client.send(.setFeatures([.version1, .vhostUserProtocolFeatures]))
        #expect(try client.ack(.setStatus([.featuresOK])).isSuccess)
        #expect(try client.ack(.setStatus([.acknowledge, .driver, .featuresOK, .driverOK])).isSuccess)
        try client.send(.getStatus)
        #expect(try client.reply(to: .getStatus) == .status([.acknowledge, .driver, .featuresOK, .driverOK]))
        #expect(try client.ack(.setStatus([])).isSuccess)
        try client.send(.setStatus([.acknowledge, .driver, .driverOK]))
        client.close()
        let end = try server.report(1).end
        #expect(end.map { "\($0)".contains("outOfOrder(DRIVER_OK)") } == true, "got \(String(describing: end))")
    }

    @Test("GHT-VU-22: unsupported requests are answered as failures or ignored, and the session goes on")
    func unsupportedRequests() throws {
        let server = try TestBackEnd("unsupported")
        let client = try RawVhostUserClient(path: server.path)
        try client.negotiate()
        try client.sendRaw(request: 6, payload: [UInt8](repeating: 0, count: 16))   // SET_LOG_BASE: a u64 reply
        #expect(try client.u64Reply(request: 6) != 0)
        try client.sendRaw(request: 30, payload: [])   // POSTCOPY_END: a u64 reply
        #expect(try client.u64Reply(request: 30) != 0)
        try client.sendRaw(request: 27, payload: [UInt8](repeating: 0, count: 8), needReply: true)   // CLOSE_CRYPTO_SESSION
        #expect(try client.u64Reply(request: 27) != 0, "NEED_REPLY: a non-zero REPLY_ACK")
        try client.sendRaw(request: 19, payload: [UInt8](repeating: 0, count: 8))   // SEND_RARP, no reply solicited: ignored
        try client.send(.getQueueNum)
        #expect(try client.reply(to: .getQueueNum) == .queueCount(2), "the session still answers")
        try client.send(.getStatus)
        #expect(try client.reply(to: .getStatus) == .status([]), "no device state changed")
        client.close()
        #expect(try server.report(1).end == .disconnected)
    }

    @Test("GHT-VUG-03: SET_GRANT_TABLE whose frames are not in a registered region is refused with a non-zero ack")
    func grantTableFramesOutsideMemory() throws {
        let server = try TestBackEnd("vug03")
        let client = try RawVhostUserClient(path: server.path)
        try client.negotiate()
        try client.shareMemory()
        #expect(try !client.ack(.setGrantTable(client.grantTableInfo(framesGuestAddress: 0x4000_0000)), fds: [client.table.fd.rawValue]).isSuccess)
        #expect(try !client.ack(.setGrantTable(client.grantTableInfo(frameCount: 1000)), fds: [client.table.fd.rawValue]).isSuccess,
                "more frames than the region holds")
        #expect(try client.ack(.setGrantTable(client.grantTableInfo()), fds: [client.table.fd.rawValue]).isSuccess)
        client.close()
        #expect(try server.report(1).granter == DomainID(1))
    }

    @Test("GHT-VUG-04, GHT-VUG-05, GHT-VUG-06: REVOKE_GRANTS always answers; IOTLB_MSG is refused in grant mode; RESET_OWNER forgets the table")
    func revokeIOTLBAndReset() throws {
        let server = try TestBackEnd("vug04")
        let client = try RawVhostUserClient(path: server.path)
        try client.negotiate()
        try client.shareMemory()
        let range = VhostUserGrantRange(first: GrantReference(8), count: 4)
        try client.send(.revokeGrants(range))
        #expect(try client.u64Reply(request: 1025) != 0, "no grant table yet")
        #expect(try client.ack(.setGrantTable(client.grantTableInfo()), fds: [client.table.fd.rawValue]).isSuccess)
        try client.send(.revokeGrants(range))
        #expect(try client.u64Reply(request: 1025) == 0, "nothing mapped: revoked at once")
        try client.send(.revokeGrants(VhostUserGrantRange(first: GrantReference(500), count: 100)))
        #expect(try client.u64Reply(request: 1025) != 0, "the range passes the table's end (512 entries)")
        try client.send(.iotlb(.update(iova: 0, size: 4096, userAddress: UInt64(client.pool.range.startAddress), permission: .readWrite)))
        #expect(try client.u64Reply(request: 22) != 0, "GHT-VUG-05")
        // RESET_OWNER forgets the table; a new owner sets it again.
        #expect(try client.ack(.resetOwner).isSuccess)
        try client.send(.setProtocolFeatures([.replyAck, .status, .grantTable, .configureMemorySlots]))
        #expect(try client.ack(.setOwner).isSuccess)
        try client.send(.revokeGrants(range))
        #expect(try client.u64Reply(request: 1025) != 0, "GHT-VUG-06: the table is gone")
        try client.shareMemory()
        #expect(try client.ack(.setGrantTable(client.grantTableInfo()), fds: [client.table.fd.rawValue]).isSuccess)
        try client.send(.revokeGrants(range))
        #expect(try client.u64Reply(request: 1025) == 0)
        client.close()
        #expect(try server.report(1).end == .disconnected)
    }
}

/// A front-end driving one queue by hand over a ``RawVhostUserClient``, in guest-physical mode:
/// the ring in pool pages 0-2, request buffers from page 4, replies from page 8.
struct HandDrivenQueue {
    let client: RawVhostUserClient
    var driver: SplitDriverQueue
    let kick: Doorbell, call: Doorbell, err: Doorbell
    static let size = 16

    /// Negotiates, shares memory and configures queue 0, not enabled yet; the status stops at
    /// FEATURES_OK. ``driverOK()`` starts it as QEMU does.
    init(_ client: RawVhostUserClient) throws {
        self.client = client
        try client.negotiate([.replyAck, .status, .backendRequest])
        try client.shareMemory()
        #expect(try client.ack(.setFeatures([.version1, .vhostUserProtocolFeatures])).isSuccess)
        for s: DeviceStatus in [[.acknowledge], [.acknowledge, .driver], [.acknowledge, .driver, .featuresOK]] {
            #expect(try client.ack(.setStatus(s)).isSuccess)
        }
        let layout = SplitRingLayout(queueSize: Self.size)!
        let page = { (n: Int) in client.pool.range.slice(offset: n * 4096, length: 4096) }
        driver = SplitDriverQueue(ring: try SplitRing(layout: layout, descriptorTable: page(0), availRing: page(1), usedRing: page(2)),
                                  features: [.version1])
        kick = try Doorbell()
        call = try Doorbell()
        err = try Doorbell()
        let user = { (n: Int) in UInt64(client.pool.range.startAddress) + UInt64(n * 4096) }
        #expect(try client.ack(.setVringNum(VhostUserVringState(index: 0, num: UInt32(Self.size)))).isSuccess)
        #expect(try client.ack(.setVringAddress(VhostUserVringAddress(index: 0, descriptor: user(0), used: user(2), available: user(1), log: 0))).isSuccess)
        #expect(try client.ack(.setVringBase(VhostUserVringState(index: 0, num: 0))).isSuccess)
        #expect(try client.ack(.setVringKick(VhostUserVringFile(index: 0)), fds: [kick.fd.rawValue]).isSuccess)
        #expect(try client.ack(.setVringCall(VhostUserVringFile(index: 0)), fds: [call.fd.rawValue]).isSuccess)
        #expect(try client.ack(.setVringErr(VhostUserVringFile(index: 0)), fds: [err.fd.rawValue]).isSuccess)
    }

    /// SET_VRING_ENABLE 1: the queue runs from here (GHT-VU-24). A session that ends instead
    /// is the caller's to expect: the error is thrown, not recorded.
    func enable() throws {
        let ok = try client.ack(.setVringEnable(VhostUserVringState(index: 0, num: 1))).isSuccess
        #expect(ok)
    }

    /// Posts request `n` (16 bytes of `n`) with a 64-byte reply buffer, or the given segments, and kicks.
    mutating func post(_ n: Int, readable: [BufferSegment]? = nil) throws {
        client.pool.range.slice(offset: (4 + n) * 4096, length: 16).fill(with: UInt8(n))
        try driver.add(readable: readable ?? [BufferSegment(address: UInt64((4 + n) * 4096), length: 16)],
                       writable: [BufferSegment(address: UInt64((8 + n) * 4096), length: 64)], token: UInt64(n))
        driver.publish()
        try kick.signal()
    }

    /// What QEMU 7.2 sends when the driver sets DRIVER_OK: SET_VRING_ENABLE 1, then the status.
    func driverOK() throws {
        try enable()
        let ok = try client.ack(.setStatus([.acknowledge, .driver, .featuresOK, .driverOK])).isSuccess
        #expect(ok)
    }
}

@Suite("Endpoint rules", .tags(.transport))
struct EndpointRuleTests {
    @Test("GHT-CTL-03, STAT-DEV-01: a configured and kicked queue consumes nothing before the front-end enables it (which it does after DRIVER_OK), and everything after")
    func nothingBeforeDriverOK() throws {
        let server = try TestBackEnd("driverok")
        var q = try HandDrivenQueue(try RawVhostUserClient(path: server.path))
        try q.post(0)
        #expect(try !q.call.wait(timeoutMilliseconds: 200), "no completion before the ring is enabled")
        #expect(try q.driver.reapUsed() == nil)
        try q.enable()
        #expect(try q.call.wait(timeoutMilliseconds: 3000))
        let used = try #require(try q.driver.reapUsed())
        #expect(used.token == 0 && used.writtenLength == 8 + 16)
        #expect(q.client.pool.range.slice(offset: 8 * 4096 + 8, length: 16).withUnsafeBytes { Array($0) } == Array(repeating: 0, count: 16))
    }

    @Test("GHT-CTL-04, GHT-BRK-05, OP-DEV-01: a broken queue signals err, sets DEVICE_NEEDS_RESET and sends CONFIG_CHANGE on the back-end channel")
    func brokenQueueIsReported() throws {
        let server = try TestBackEnd("broken")
        let client = try RawVhostUserClient(path: server.path)
        let (ours, theirs) = try UnixSocket.pair()
        try ours.setReceiveTimeout(milliseconds: 3000)
        var q = try HandDrivenQueue(client)
        #expect(try client.ack(.setBackEndRequestFD, fds: [theirs.fd.rawValue]).isSuccess)
        theirs.close()
        try q.driverOK()
        try q.post(1)
        #expect(try q.call.wait(timeoutMilliseconds: 3000), "a good request completes")
        try q.post(2, readable: [BufferSegment(address: UInt64(client.pool.size) + 0x10000, length: 16)])   // outside shared memory
        #expect(try q.err.wait(timeoutMilliseconds: 3000), "the err doorbell rings")
        try client.send(.getStatus)
        #expect(try client.reply(to: .getStatus) == .status([.acknowledge, .driver, .featuresOK, .driverOK, .deviceNeedsReset]))
        let channel = VhostUserChannel(socket: ours)
        let message = try channel.receive()
        #expect(message.frame.header.request == VhostUserBackEndRequest.configChange.rawValue)
        client.close()
        let report = try server.report(1)
        #expect(report.brokenQueues.count == 1)
        #expect(report.faults.isEmpty, "a guest-physical fault is not a grant fault")
    }

    @Test("GHT-CTL-05: a back-end that accepts and then stays silent is a timedOut error after the configured timeout")
    func silentBackEnd() throws {
        let path = temporarySocketPath("silent")
        let listener = try UnixSocket.listen(path: path)
        defer { listener.close() }
        var configuration = FrontEndConfiguration()
        configuration.timeoutMilliseconds = 300
        let start = ContinuousClock.now
        #expect(throws: FrontEndError.timedOut("reply to getFeatures")) {
            _ = try FrontEnd.connect(socketPath: path, configuration: configuration)
        }
        let elapsed = ContinuousClock.now - start
        #expect(elapsed >= .milliseconds(290) && elapsed < .seconds(3))
    }

    @Test("GHT-VU-21: a front-end that gets a malformed reply reports a protocol violation and closes the connection")
    func badReplyClosesFrontEnd() throws {
        let path = temporarySocketPath("badreply")
        let listener = try UnixSocket.listen(path: path)
        defer { listener.close() }
        let fake = WorkerThread(name: "fake") {
            guard let connection = try? listener.accept() else { return }
            let channel = VhostUserChannel(socket: connection)
            _ = try? channel.receive()   // GET_FEATURES
            // A reply for another request.
            try? channel.send(VhostUserHeader.reply(VhostUserRequest.getQueueNum.rawValue, payloadSize: 8).encoded() + [1, 0, 0, 0, 0, 0, 0, 0])
            try? connection.setReceiveTimeout(milliseconds: 3000)
            do {
                _ = try channel.receive()
            } catch {
                if case VhostUserChannel.ReceiveError.closed = error { closedByFrontEnd.store(true, ordering: .releasing) }
            }
        }
        #expect {
            _ = try FrontEnd.connect(socketPath: path)
        } throws: { error in
            guard case FrontEndError.protocolViolation = error else { return false }
            return true
        }
        fake.join()
        let closed = closedByFrontEnd.load(ordering: .acquiring)
        #expect(closed, "the front-end closed the connection")
    }

    @Test("GHT-CTL-06: a front-end that closes ends every grant it made, and its grant table is empty afterwards")
    func closeEndsEveryGrant() throws {
        let server = try TestBackEnd("close")
        let frontEnd = try FrontEnd.connect(socketPath: server.path)
        try EndpointTests.stream(frontEnd, count: 300)
        #expect(frontEnd.grantsMade > 0)
        frontEnd.close()
        #expect(frontEnd.grantsEnded == frontEnd.grantsMade)
        #expect(frontEnd.grantedReferenceCount == 0)
    }
}

private let closedByFrontEnd = Atomic<Bool>(false)
