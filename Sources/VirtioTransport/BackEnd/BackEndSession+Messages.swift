import VirtioCore
import VirtioGrants
import VirtioSystem
import VhostUser

extension BackEndSession {
    /// Requests a front-end may send before SET_OWNER (QEMU sends these while it probes the
    /// back-end, vhost_user_backend_init); everything else needs an owner.
    static let beforeOwner: Set<VhostUserRequest> = [.getFeatures, .getProtocolFeatures, .setProtocolFeatures, .getQueueNum,
                                                     .getMaxMemorySlots, .setBackEndRequestFD, .setOwner, .getConfig, .getStatus]

    /// Applies one decoded request. Throws for anything illegal in the current state; the
    /// session then closes the connection.
    func handle(_ message: VhostUserMessage, header: VhostUserHeader, fds: [FileDescriptor]) throws {
        let request = message.request
        log(.debug, .control, "\(request)\(fds.isEmpty ? "" : " with \(fds.count) descriptor(s)")")
        guard owned || Self.beforeOwner.contains(request) else { throw Violation("\(request) before SET_OWNER") }
        switch message {
        case .getFeatures:
            try send(.features(offeredFeatures))
        case .setFeatures(let features):
            guard offeredFeatures.isSuperset(of: features) else {
                throw Violation("SET_FEATURES accepts features not offered: \(features.subtracting(offeredFeatures))")
            }
            guard !anyQueueStarted else { throw Violation("SET_FEATURES while queues run") }
            ackedFeatures = features
            try acknowledge(header)
        case .setOwner:
            guard !owned else { throw Violation("SET_OWNER twice") }
            owned = true
            try acknowledge(header)
        case .resetOwner, .resetDevice:
            // Acknowledged under the protocol features in force when it was sent: RESET_OWNER clears them.
            let features = protocolFeatures
            resetDevice(keepOwner: request == .resetDevice)
            if header.needsReply && features.contains(.replyAck) { try send(.ack(request, .success)) }
        case .getProtocolFeatures:
            try send(.protocolFeatures(offeredProtocolFeatures))
        case .setProtocolFeatures(let features):
            guard offeredProtocolFeatures.isSuperset(of: features) else {
                throw Violation("SET_PROTOCOL_FEATURES accepts features not offered: \(features.subtracting(offeredProtocolFeatures))")
            }
            protocolFeatures = features
            try acknowledge(header)
        case .getQueueNum:
            try send(.queueCount(UInt64(device.queueCount)))
        case .getMaxMemorySlots:
            try send(.memorySlotCount(UInt64(configuration.maxMemorySlots)))
        case .setMemoryTable(let table):
            try setMemoryTable(table, fds: fds)
            try acknowledge(header)
        case .addMemoryRegion(let region):
            try addMemoryRegion(region, fd: fds[0])
            try acknowledge(header)
        case .removeMemoryRegion(let region):
            try removeMemoryRegion(region)
            try acknowledge(header)
        case .setVringNum(let state):
            try setVringSize(state)
            try acknowledge(header)
        case .setVringAddress(let address):
            try setVringAddress(address)
            try acknowledge(header)
        case .setVringBase(let state):
            try setVringBase(state)
            try acknowledge(header)
        case .getVringBase(let state):
            let base = try getVringBase(state)
            try send(.vringBase(VhostUserVringState(index: state.index, num: base)))
        case .setVringKick(let file), .setVringCall(let file), .setVringErr(let file):
            try setVringFile(request, file, fd: fds.first)
            try acknowledge(header)
        case .setVringEnable(let state):
            try setVringEnable(state)
            try acknowledge(header)
        case .setBackEndRequestFD:
            guard protocolFeatures.contains(.backendRequest) else { throw Violation("SET_BACKEND_REQ_FD without BACKEND_REQ") }
            let socket = UnixSocket(adopting: fds[0])
            backendChannel.withLock { $0?.close(); $0 = socket }
            try acknowledge(header)
        case .iotlb(let message):
            try send(.ack(.iotlbMessage, handleIOTLB(message)))
        case .setVringEndian:
            throw Violation("SET_VRING_ENDIAN: legacy (big-endian) rings are not supported")
        case .getConfig(let config):
            try send(getConfig(config))
        case .setConfig(let config):
            guard protocolFeatures.contains(.config) else { throw Violation("SET_CONFIG without CONFIG") }
            try acknowledge(header, device.writeConfig(offset: Int(config.offset), bytes: config.data) ? .success : .failure())
        case .vringKick:
            throw Violation("VRING_KICK: in-band notifications are not supported")
        case .setStatus(let new):
            try setStatus(new)
            try acknowledge(header)
        case .getStatus:
            try send(.status(status.status))
        case .setGrantTable(let info):
            let ack = try setGrantTable(info, fd: fds[0])
            // GHT-VUG-03: a refusal nobody asked to hear about must not pass silently.
            guard ack.isSuccess || (header.needsReply && protocolFeatures.contains(.replyAck)) else {
                throw Violation("SET_GRANT_TABLE refused without NEED_REPLY (GHT-VUG-03)")
            }
            try acknowledge(header, ack)
        case .revokeGrants(let range):
            guard protocolFeatures.contains(.grantTable) else { throw Violation("REVOKE_GRANTS without GRANT_TABLE (GHT-VUG-02)") }
            try send(.ack(.revokeGrants, revokeGrants(range)))
        case .getInflightFD(let asked):
            try getInflightFD(asked)
        case .setInflightFD(let info):
            try setInflightFD(info, fd: fds[0])
            try acknowledge(header)
        case .unsupported(let request, _):
            // GHT-VU-22: a failure where the protocol can say so; a request that needs a reply
            // body we cannot give ends the session; the rest are ignored. Descriptors close.
            switch request {
            case .setLogBase, .postcopyEnd: try send(.ack(request, .failure()))
            case .createCryptoSession, .postcopyAdvise: throw Violation("\(request) is not supported")
            default: try acknowledge(header, .failure())
            }
        }
    }

    /// The virtio status written by the driver, checked against §2.1/§3.1 (GHT-VU, STAT-DRV-*).
    func setStatus(_ new: DeviceStatus) throws {
        let old = status.status
        if new.isEmpty {
            resetDevice(keepOwner: true)
            return
        }
        do {
            // GHT-VU-23: QEMU writes FEATURES_OK alone after SET_FEATURES, then ORs in
            // ACKNOWLEDGE|DRIVER|DRIVER_OK when the device starts (vhost_user_add_status).
            try DeviceStatus.validateDriverWrite(from: old, to: new, strictOrder: false)
        } catch {
            throw Violation("status \(old) -> \(new): \(error)")
        }
        var accepted = new.union(old.intersection(.deviceNeedsReset))
        if new.contains(.featuresOK) && !old.contains(.featuresOK) && !featuresAcceptable() {
            // FEAT-DEV-02: the device leaves FEATURES_OK clear; the driver sees it on re-read.
            accepted.remove(.featuresOK)
        }
        status.store(accepted)
        if accepted.contains(.driverOK) {
            try startReadyQueues()
            for i in vrings.indices { noteIfHeldBack(i) }
        }
    }

    /// Whether the accepted features can be served: VERSION_1 (VER-DEV-01: the device may refuse
    /// to work without it), no legacy or foreign-transport bits, and the device's own consent.
    func featuresAcceptable() -> Bool {
        guard let features = ackedFeatures, features.contains(.version1) else { return false }
        let device = features.intersection(.deviceTypeBits)
        guard device.closure(requirements: self.device.featureRequirements) == device else { return false }
        return self.device.acceptFeatures(features)
    }

    /// GET_CONFIG: the requested window of the configuration space, as the device answers it
    /// (GHT-EMB-03). A window the device refuses, or answers with the wrong length, gets
    /// GET_CONFIG's error reply (size 0, vhost-user.rst) and a warning; the session goes on.
    func getConfig(_ request: VhostUserConfig) -> VhostUserReply {
        let offset = Int(request.offset), count = request.data.count
        do throws(ConfigurationSpaceError) {
            let bytes = try device.readConfig(offset: offset, count: count)
            guard bytes.count == count else { throw .wrongLength(count: count, returned: bytes.count) }
            return .config(VhostUserConfig(offset: request.offset, flags: request.flags, data: bytes))
        } catch {
            log(.warning, .control, "GET_CONFIG refused: \(error)")
            return .configUnavailable
        }
    }

    /// A device reset (status 0, RESET_DEVICE, RESET_OWNER): queues stopped and forgotten,
    /// features, status and IOVA mappings cleared, the device reset. Memory and the grant
    /// table are transport state and stay, except on RESET_OWNER.
    func resetDevice(keepOwner: Bool) {
        stopAllQueues(resetConfiguration: true)
        ackedFeatures = nil
        iovaSpace.invalidateAll()
        device.reset()
        status.store([])
        if !keepOwner {
            owned = false
            protocolFeatures = []
            grants = nil
            regions.removeAll()
        }
    }
}

