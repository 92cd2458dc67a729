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

/// A device whose feature declaration the test chooses: `declared` device features (which may
/// include bits that are not device-type bits, as a careless embedder might write), prerequisites
/// among them, and the sets it refuses at FEATURES_OK.
final class DeclaredFeaturesDevice: VirtioDevice {
    let deviceID: UInt32 = 0xFFFF
    let deviceFeatures: VirtioFeatures
    let featureRequirements: [(VirtioFeatures, VirtioFeatures)]
    let refuses: VirtioFeatures
    let queueCount = 1
    let maxQueueSize = 16

    init(_ declared: VirtioFeatures, requirements: [(VirtioFeatures, VirtioFeatures)] = [], refuses: VirtioFeatures = []) {
        deviceFeatures = declared
        featureRequirements = requirements
        self.refuses = refuses
    }

    func readConfig() -> [UInt8] { [1, 2, 3, 4] }
    func acceptFeatures(_ features: VirtioFeatures) -> Bool { features.isDisjoint(with: refuses) }
    func process(queue: Int, batch: inout RequestBatch) {
        for i in 0..<batch.count { batch.complete(i, usedLength: 0) }
    }
    func reset() {}
}

/// The transport bits this library has ring code for, and so may offer (FEAT-DEV-04): indirect
/// tables, event index, VERSION_1, ACCESS_PLATFORM (grants, IOVAs), packed rings, IN_ORDER.
private let honouredTransportBits: VirtioFeatures = [.indirectDescriptors, .eventIndex, .version1, .accessPlatform, .ringPacked, .inOrder]

/// The virtio features in a vhost-user GET_FEATURES reply: bit 30 there is
/// VHOST_USER_F_PROTOCOL_FEATURES, which a front-end strips before the driver sees the set.
private func virtioBits(_ offered: VirtioFeatures) -> VirtioFeatures { offered.subtracting([.vhostUserProtocolFeatures, .vhostLogAll]) }

/// Writes `features`, walks the status to FEATURES_OK, reads the status back and resets the
/// device (SET_STATUS 0, or RESET_DEVICE). Returns the status read.
private func statusAfterNegotiating(_ c: RawVhostUserClient, _ features: VirtioFeatures, resetDevice: Bool = false) throws -> DeviceStatus {
    #expect(try c.ack(.setFeatures(features.union(.vhostUserProtocolFeatures))).isSuccess)
    for s: DeviceStatus in [[.acknowledge], [.acknowledge, .driver], [.acknowledge, .driver, .featuresOK]] {
        #expect(try c.ack(.setStatus(s)).isSuccess)
    }
    try c.send(.getStatus)
    guard case .status(let status) = try c.reply(to: .getStatus) else { throw RawVhostUserClient.Unexpected("GET_STATUS") }
    #expect(try c.ack(resetDevice ? .resetDevice : .setStatus([])).isSuccess)
    return status
}

@Suite("Feature negotiation and configuration, device side", .tags(.transport))
struct DeviceFeatureRuleTests {
    static let protocolFeatures: VhostUserProtocolFeatures = [.replyAck, .status, .config, .resetDevice]

    /// The features a session of a back-end serving `device` offers.
    func offered(by device: @escaping @Sendable () -> any VirtioDevice) throws -> VirtioFeatures {
        let path = temporarySocketPath("offer")
        let server = try BackEnd(socketPath: path, makeDevice: device)
        server.start()
        defer { server.stop() }
        let client = try RawVhostUserClient(path: path)
        defer { client.close() }
        return try client.negotiate(Self.protocolFeatures)
    }

    @Test("FEAT-DEV-01: a feature whose prerequisite the device does not offer is not offered either")
    func prerequisitesOffered() throws {
        let a = VirtioFeatures(bit: 0), b = VirtioFeatures(bit: 1), c = VirtioFeatures(bit: 2), d = VirtioFeatures(bit: 3)
        let requirements = [(a, b), (c, d)]
        // a needs b, which the device does not declare; c needs d, which it does.
        let offered = try offered { DeclaredFeaturesDevice([a, c, d], requirements: requirements) }
        for (feature, needs) in requirements where offered.isSuperset(of: feature) {
            #expect(offered.isSuperset(of: needs), "\(feature) offered without \(needs.subtracting(offered))")
        }
        #expect(offered.isSuperset(of: [c, d]), "a feature whose prerequisites are offered stays offered")
        #expect(offered.missingPrerequisites(requirements).isEmpty)
    }

    @Test("FEAT-DEV-02: every subset of the offered transport features is accepted; a set the device cannot serve leaves FEATURES_OK clear")
    func anyValidSubset() throws {
        let a = VirtioFeatures(bit: 0), b = VirtioFeatures(bit: 1), refused = VirtioFeatures(bit: 2)
        let path = temporarySocketPath("subsets")
        let server = try BackEnd(socketPath: path) { DeclaredFeaturesDevice([a, b, refused], requirements: [(a, b)], refuses: refused) }
        server.start()
        defer { server.stop() }
        let client = try RawVhostUserClient(path: path)
        let offered = virtioBits(try client.negotiate(Self.protocolFeatures))
        let optional = offered.intersection(.transportBits).subtracting(.version1).bits
        #expect(optional.count >= 4, "offered transport bits: \(optional)")
        for mask in 0..<(1 << optional.count) {
            var set: VirtioFeatures = .version1
            for (k, bit) in optional.enumerated() where mask & (1 << k) != 0 { set.insert(VirtioFeatures(bit: bit)) }
            #expect(try statusAfterNegotiating(client, set).contains(.featuresOK), "\(set) refused")
        }
        #expect(try statusAfterNegotiating(client, [.version1, a, b]).contains(.featuresOK))
        #expect(try statusAfterNegotiating(client, [.version1, b]).contains(.featuresOK))
        #expect(try !statusAfterNegotiating(client, [.version1, a]).contains(.featuresOK), "a without its prerequisite b")
        #expect(try !statusAfterNegotiating(client, [.version1, refused]).contains(.featuresOK), "a set the device refuses")
        client.close()
        #expect(try TestBackEndReports(server).report(1).end == .disconnected)
    }

    @Test("FEAT-DEV-03: a feature set accepted once is accepted again after each of 100 device resets")
    func acceptedAfterReset() throws {
        let server = try TestBackEnd("renegotiate")
        let client = try RawVhostUserClient(path: server.path)
        let offered = virtioBits(try client.negotiate(Self.protocolFeatures))
        let set = offered.intersection([.version1, .accessPlatform, .eventIndex, .indirectDescriptors])
        #expect(try statusAfterNegotiating(client, set).contains(.featuresOK))
        for round in 0..<100 {
            let status = try statusAfterNegotiating(client, set, resetDevice: round % 2 == 1)
            #expect(status.contains(.featuresOK), "round \(round): \(status)")
        }
        client.close()
        #expect(try server.report(1).end == .disconnected)
    }

    @Test("FEAT-DEV-04, FEAT-T-01: only bits the library honours are offered; reserved, legacy and PCI-only bits a device declares are not")
    func onlyHonouredBits() throws {
        let sloppy: VirtioFeatures = [VirtioFeatures(bit: 5), .notifyOnEmpty, .anyLayout, .srIOV, .notifConfigData, VirtioFeatures(bit: 41),
                                      VirtioFeatures(bit: 45), .orderPlatform, .notificationData, .ringReset]
        for device in [{ DeclaredFeaturesDevice(sloppy) as any VirtioDevice }, { ChecksumEchoDevice() }, { NetworkDevice(switch: NetworkSwitch()) }] as [@Sendable () -> any VirtioDevice] {
            let declared = device().deviceFeatures
            let offered = virtioBits(try offered(by: device))
            #expect(honouredTransportBits.union(declared.intersection(.deviceTypeBits)).isSuperset(of: offered),
                    "offered but not honoured: \(offered.subtracting(honouredTransportBits.union(declared.intersection(.deviceTypeBits))))")
            #expect(offered.isDisjoint(with: VirtioFeatures.reservedBits.union(.legacyOnly)))
            #expect(offered.isDisjoint(with: .foreignTransportBits), "FEAT-T-01: SR_IOV, NOTIF_CONFIG_DATA and ADMIN_VQ belong to PCI")
        }
    }

    @Test("FEAT-T-01: a front-end that accepts SR_IOV, NOTIF_CONFIG_DATA or ADMIN_VQ is refused", arguments: [37, 39, 41])
    func foreignBitAccepted(bit: Int) throws {
        let server = try TestBackEnd("foreign")
        let client = try RawVhostUserClient(path: server.path)
        try client.negotiate(Self.protocolFeatures)
        try client.send(.setFeatures([.version1, .vhostUserProtocolFeatures, VirtioFeatures(bit: bit)]), needReply: true)
        #expect(client.isClosedByPeer())
        guard case .violation(let reason) = try server.report(1).end else {
            Issue.record("the session accepted bit \(bit)")
            return
        }
        #expect(reason.contains("not offered"), "\(reason)")
    }

    @Test("VER-DEV-01, AP-DEV-01: VERSION_1 and ACCESS_PLATFORM are always offered; a set without VERSION_1 leaves FEATURES_OK clear")
    func versionAndAccessPlatform() throws {
        for device in [{ DeclaredFeaturesDevice([]) as any VirtioDevice }, { ChecksumEchoDevice() }, { NetworkDevice(switch: NetworkSwitch()) }] as [@Sendable () -> any VirtioDevice] {
            #expect(try offered(by: device).isSuperset(of: [.version1, .accessPlatform]))
        }
        let server = try TestBackEnd("version1")
        let client = try RawVhostUserClient(path: server.path)
        try client.negotiate(Self.protocolFeatures)
        #expect(try !statusAfterNegotiating(client, [.accessPlatform, .eventIndex]).contains(.featuresOK))
        #expect(try !statusAfterNegotiating(client, []).contains(.featuresOK))
        #expect(try statusAfterNegotiating(client, [.version1]).contains(.featuresOK), "the same session accepts it with VERSION_1")
        client.close()
    }

    @Test("CFG-DEV-01: the whole configuration space, fields of offered features included, reads the same before feature negotiation as after DRIVER_OK")
    func configBeforeFeaturesOK() throws {
        let image = "/tmp/vg-cfg-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).img"
        let fd = open(image, O_CREAT | O_TRUNC | O_RDWR | O_CLOEXEC, 0o600)
        try #require(fd >= 0 && ftruncate(fd, 1 << 20) == 0)
        Glibc.close(fd)
        defer { unlink(image) }
        let device = BlockDevice(file: try StorageFile(path: image, writable: true))
        #expect(device.deviceFeatures.isSuperset(of: [.blockDiscard, .blockWriteZeroes]))
        let path = temporarySocketPath("cfg")
        let server = try BackEnd(socketPath: path) { device }
        server.start()
        defer { server.stop() }
        let client = try RawVhostUserClient(path: path)
        let space = device.readConfig()
        let read = { () throws -> [UInt8] in
            let request = VhostUserMessage.getConfig(VhostUserConfig(offset: 0, flags: [], data: [UInt8](repeating: 0, count: space.count)))
            try client.send(request)
            guard case .config(let config) = try client.reply(to: request) else { throw RawVhostUserClient.Unexpected("GET_CONFIG") }
            return config.data
        }
        try client.send(.getFeatures)
        _ = try client.reply(to: .getFeatures)
        try client.send(.setProtocolFeatures(Self.protocolFeatures))
        let before = try read()   // before SET_OWNER, SET_FEATURES and any status
        #expect(before == space)
        let le32 = { (o: Int) in before[o..<(o + 4)].reversed().reduce(UInt32(0)) { $0 << 8 | UInt32($1) } }
        #expect(le32(36) != 0 && le32(48) != 0, "max_discard_sectors and max_write_zeroes_sectors (DISCARD, WRITE_ZEROES offered)")
        #expect(try client.ack(.setOwner).isSuccess)
        #expect(try client.ack(.setFeatures([.version1, .vhostUserProtocolFeatures])).isSuccess)
        for s: DeviceStatus in [[.acknowledge], [.acknowledge, .driver]] { #expect(try client.ack(.setStatus(s)).isSuccess) }
        #expect(try read() == space, "after DRIVER, before FEATURES_OK, DISCARD not accepted")
        for s: DeviceStatus in [[.acknowledge, .driver, .featuresOK], [.acknowledge, .driver, .featuresOK, .driverOK]] {
            #expect(try client.ack(.setStatus(s)).isSuccess)
        }
        #expect(try read() == before)
        client.close()
    }

    @Test("GHT-VUG-02: SET_GRANT_TABLE and REVOKE_GRANTS without GRANT_TABLE negotiated close the connection",
          arguments: ["SET_GRANT_TABLE", "REVOKE_GRANTS"])
    func grantRequestsNeedGrantTable(request: String) throws {
        let server = try TestBackEnd("vug02")
        let client = try RawVhostUserClient(path: server.path)
        try client.negotiate([.replyAck, .status, .configureMemorySlots, .backendRequest])
        try client.shareMemory()
        if request == "SET_GRANT_TABLE" {
            try client.send(.setGrantTable(client.grantTableInfo()), needReply: true, fds: [client.table.fd.rawValue])
        } else {
            try client.send(.revokeGrants(VhostUserGrantRange(first: GrantReference(8), count: 4)))
        }
        #expect(client.isClosedByPeer(), "\(request) is answered instead of closing the connection")
        guard case .violation(let reason) = try server.report(1).end else {
            Issue.record("the session did not end with a violation")
            return
        }
        #expect(reason.contains("GRANT_TABLE"), "\(reason)")
    }
}

/// Waits for a session report of a ``BackEnd`` the test made itself.
struct TestBackEndReports {
    let backEnd: BackEnd
    init(_ backEnd: BackEnd) { self.backEnd = backEnd }

    func report(_ n: Int) throws -> SessionReport {
        for _ in 0..<600 {
            if let r = backEnd.reports.first(where: { $0.id == n }) { return r }
            usleep(5000)
        }
        throw RawVhostUserClient.Unexpected("session \(n) did not end")
    }
}
