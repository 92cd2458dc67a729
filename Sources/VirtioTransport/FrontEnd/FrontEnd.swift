import Synchronization
import VirtioCore
import VirtioGrants
import VirtioSystem
import VhostUser

/// A vhost-user front-end in Swift: the driver side of a device served by a back-end in
/// another process (QEMU's role, for our own back-end).
///
/// It walks the status sequence (ACKNOWLEDGE, DRIVER, FEATURES_OK and its re-read, DRIVER_OK;
/// §3.1.1), negotiates features, shares a pool of its own holding its rings, indirect tables
/// and buffers (``FrontEndPool``: what the device only reads in a file the back-end can map
/// only read-only, Spec/hostile-peers.md §5), and in grant mode its grant table, grants every
/// area with the access the device needs (read-only for what the device only reads, H3), and
/// sets up its queues. A back-end that dies is reported as ``FrontEndError/disconnected``
/// within the timeout, never a hang; with a ``FrontEndConfiguration/reconnect`` policy the
/// front-end reconnects to the back-end restarted at the same path instead and carries on
/// (FrontEnd+Reconnect.swift, Spec/restart.md §2).
public final class FrontEnd: @unchecked Sendable {
    public let configuration: FrontEndConfiguration
    /// The control connection; replaced only by a reconnection, under ``recovery``.
    var channel: VhostUserChannel
    /// Where the back-end listens (nil for a front-end made over a connected socket, which
    /// cannot reconnect).
    var socketPath: String?
    /// Serializes reconnections: the thread that sees the back-end gone first reconnects,
    /// the others wait and find ``connectionGeneration`` moved on.
    let recovery = Locked<Void>(())
    /// Counts connections to the back-end made after the first (GHT-RCN-01).
    let connectionGeneration = Atomic<Int>(0)
    /// Set once the first setup completed: only then is a lost connection recovered.
    var resumable = false
    /// Set while a reconnection replays the setup (by the thread that holds ``recovery``): its
    /// own requests that fail are not recovered again. Control requests are made from one
    /// thread at a time; queue waits on other threads recover through the lock instead.
    var replaying = false
    /// Why the last reconnection failed; every later recovery reports it.
    var resumeFailure: FrontEndError?
    /// This connection's shared memory, never another back-end's (GHT-HBE-01).
    let pool: FrontEndPool
    let grants: GrantTable?
    let grantTableMemory: SharedMemory?
    var protocolFeatures: VhostUserProtocolFeatures = []
    /// The features negotiated.
    public private(set) var features: VirtioFeatures = []
    /// The queues, once set up.
    public private(set) var queues: [FrontEndQueue] = []
    var grantedRuns: [(first: GrantReference, count: Int)] = []
    /// The last status the device accepted.
    var writtenStatus: DeviceStatus = []
    var closed = false
    /// The in-flight area the back-end made (GET_INFLIGHT_FD), kept for the life of the
    /// front-end and handed to every back-end it sets up queues with (SET_INFLIGHT_FD).
    var inflightArea: (memory: SharedMemory, info: VhostUserInflight)?

    /// Grants made and ended since the connection started.
    public internal(set) var grantsMade = 0
    public internal(set) var grantsEnded = 0
    /// Grants to the back-end that are live in the table now (0 once closed cleanly).
    public var grantedReferenceCount: Int { grants?.grantCount(for: configuration.backEndDomain) ?? 0 }

    /// Connects to the back-end at `socketPath` and brings the device to DRIVER_OK.
    public static func connect(socketPath: String, configuration: FrontEndConfiguration = FrontEndConfiguration()) throws(FrontEndError) -> FrontEnd {
        let socket: UnixSocket
        do {
            socket = try UnixSocket.connect(path: socketPath)
            try socket.setReceiveTimeout(milliseconds: configuration.timeoutMilliseconds)
        } catch let error as UnixSocketError {
            throw .socket(error)
        } catch {
            throw .disconnected
        }
        let frontEnd = try FrontEnd(socket: socket, configuration: configuration)
        frontEnd.socketPath = socketPath
        try frontEnd.initialize()
        frontEnd.resumable = true
        return frontEnd
    }

    init(socket: UnixSocket, configuration: FrontEndConfiguration) throws(FrontEndError) {
        // TRN-M-04: a size the ring format does not allow never reaches the device (nor the
        // pool's sizing).
        let size = configuration.queueSize
        let sizeIsValid = configuration.ring == .packed ? PackedRingLayout(queueSize: size) != nil : SplitRingLayout(queueSize: size) != nil
        guard sizeIsValid else {
            throw .negotiation("queue size \(size) is not valid for a \(configuration.ring) ring")
        }
        self.configuration = configuration
        channel = VhostUserChannel(socket: socket)
        let perQueue = FrontEndQueue.pagesNeeded(configuration)
        do throws(SharedMemoryError) {
            pool = try FrontEndPool(sealed: configuration.sealsReadOnlyMemory, readablePages: perQueue.readable * configuration.queueCount,
                                    writablePages: perQueue.writable * configuration.queueCount)
        } catch {
            throw .sharedMemory(error)
        }
        let pageCount = pool.pageCount
        if configuration.mode == .grants {
            let entries = (pageCount + GrantReference.reservedCount + 511) / 512 * 512
            do throws(SharedMemoryError) {
                let memory = try SharedMemory.create(name: "virtio-grant-table", size: entries * GrantEntry.size)
                grantTableMemory = memory
                grants = GrantTable(table: memory.range, domain: configuration.domain, frameCount: pageCount)
            } catch {
                throw .sharedMemory(error)
            }
        } else {
            grantTableMemory = nil
            grants = nil
        }
    }

    /// The negotiation and setup sequence (INIT-DRV-01).
    func initialize() throws(FrontEndError) {
        let offered = try features(of: .getFeatures)
        guard offered.contains(.vhostUserProtocolFeatures) else { throw .negotiation("the back-end offers no protocol features") }
        guard case .protocolFeatures(let protocolOffered) = try request(.getProtocolFeatures) else { throw .protocolViolation("GET_PROTOCOL_FEATURES") }
        var wanted: VhostUserProtocolFeatures = configuration.requiresStatus ? [.replyAck, .status] : [.replyAck]
        if configuration.mode == .grants { wanted.insert(.grantTable) }
        guard protocolOffered.isSuperset(of: wanted) else { throw .negotiation("missing protocol features \(wanted.subtracting(protocolOffered))") }
        // CONFIG only when offered: a device without a configuration space has none (GHT-EMB-01).
        if protocolOffered.contains(.config) { wanted.insert(.config) }
        if protocolOffered.contains(.status) { wanted.insert(.status) }
        if protocolOffered.contains(.inflightSharedMemory) { wanted.insert(.inflightSharedMemory) }
        if protocolOffered.contains(.deviceState) { wanted.insert(.deviceState) }
        protocolFeatures = wanted
        try request(.setProtocolFeatures(wanted))
        try request(.setOwner)
        guard case .queueCount(let count) = try request(.getQueueNum), count >= configuration.queueCount else {
            throw .negotiation("the device has fewer than \(configuration.queueCount) queues")
        }
        try shareMemory()
        try bringUp(offered: offered)
    }

    /// The device part of initialization: status sequence, features, queues (repeated after a reset).
    /// A step that fails leaves FAILED set on top of what was written (INIT-DRV-04, STAT-DRV-02).
    func bringUp(offered: VirtioFeatures) throws(FrontEndError) {
        do {
            try bringUpSteps(offered: offered)
        } catch {
            if !writtenStatus.contains(.failed) { try? setStatus(writtenStatus.union(.failed)) }
            throw error
        }
    }

    private func bringUpSteps(offered: VirtioFeatures) throws(FrontEndError) {
        try setStatus([.acknowledge])
        try setStatus([.acknowledge, .driver])
        var wanted: VirtioFeatures = [.version1]
        if configuration.mode == .grants {
            // AP-DRV-03: a driver that can only produce handles refuses a device without ACCESS_PLATFORM.
            guard offered.contains(.accessPlatform) else {
                try? setStatus([.acknowledge, .driver, .failed])
                throw .negotiation("ACCESS_PLATFORM is not offered")
            }
            wanted.insert(.accessPlatform)
        }
        guard offered.contains(.version1) else {
            try? setStatus([.acknowledge, .driver, .failed])
            throw .negotiation("VERSION_1 is not offered")
        }
        if configuration.ring == .packed {
            guard offered.contains(.ringPacked) else {
                try? setStatus([.acknowledge, .driver, .failed])
                throw .negotiation("RING_PACKED is not offered")
            }
            wanted.insert(.ringPacked)
        }
        if configuration.useEventIndex { wanted.insert(.eventIndex) }
        if configuration.useIndirectDescriptors { wanted.insert(.indirectDescriptors) }
        wanted.formUnion(configuration.deviceFeatures.intersection(.deviceTypeBits))
        features = wanted.intersection(offered)
        try request(.setFeatures(features.union(.vhostUserProtocolFeatures)))
        try setStatus([.acknowledge, .driver, .featuresOK])
        guard try status().contains(.featuresOK) else {   // INIT-DRV-03
            try? setStatus([.acknowledge, .driver, .featuresOK, .failed])
            throw .negotiation("FEATURES_OK did not stick")
        }
        if queues.isEmpty {
            for i in 0..<configuration.queueCount { queues.append(try FrontEndQueue(frontEnd: self, index: i)) }
        }
        try shareInflightArea()
        for q in queues { try q.configure() }
        try setStatus([.acknowledge, .driver, .featuresOK, .driverOK])
    }

    /// Registers the pool with the back-end (its two files, readable first), and in grant mode
    /// the grant table, whose frames span both.
    func shareMemory() throws(FrontEndError) {
        let (table, fds) = pool.memoryTable
        try request(.setMemoryTable(table), fds: fds)
        if let grants, let memory = grantTableMemory {
            let info = VhostUserGrantTable(granter: configuration.domain, grantee: configuration.backEndDomain,
                                           tableSize: UInt64(memory.size), tableOffset: 0, framesGuestAddress: 0,
                                           frameCount: UInt64(grants.frameCount))
            try request(.setGrantTable(info), fds: [memory.fd.rawValue])
        }
    }

    // MARK: Status and configuration

    /// The device status (GET_STATUS).
    public func status() throws(FrontEndError) -> DeviceStatus {
        // Without STATUS (libvhost-user back-ends) the status lives on this side only.
        guard protocolFeatures.contains(.status) else { return writtenStatus }
        guard case .status(let s) = try request(.getStatus) else { throw .protocolViolation("GET_STATUS") }
        return s
    }

    func setStatus(_ status: DeviceStatus) throws(FrontEndError) {
        if protocolFeatures.contains(.status) { try request(.setStatus(status)) }
        writtenStatus = status
    }

    /// The device configuration space (GET_CONFIG).
    public func readConfig(size: Int) throws(FrontEndError) -> [UInt8] {
        guard protocolFeatures.contains(.config) else { throw .negotiation("the device has no configuration space (CONFIG not offered)") }
        guard case .config(let c) = try request(.getConfig(.request(offset: 0, size: size))) else { throw .protocolViolation("GET_CONFIG") }
        return c.data
    }
    /// Stops queue `index` (VHOST_USER_GET_VRING_BASE) and returns where the back-end
    /// stopped: a split ring's next available index, or a packed ring's next available and
    /// used slots with their wrap counters (bits 0–15 and 16–31, GHT-PKD-08). The queue stays
    /// stopped until the front-end is reset.
    public func stopQueue(_ index: Int) throws(FrontEndError) -> UInt32 {
        guard case .vringBase(let state) = try request(.getVringBase(VhostUserVringState(index: UInt32(index), num: 0))) else {
            throw .protocolViolation("GET_VRING_BASE")
        }
        return state.num
    }


    /// Resets the device (writing status 0, RST-DRV-01: done once status reads 0) and brings it
    /// up again with fresh rings: the way back from DEVICE_NEEDS_RESET (STAT-DRV-04).
    public func reset() throws(FrontEndError) {
        try setStatus([])
        guard try status().isEmpty else { throw .protocolViolation("the status did not read 0 after a reset") }
        for q in queues { q.abandonOutstanding() }
        // QEMU frees the in-flight area at a device reset: the fresh rings have nothing in flight.
        inflightArea = nil
        try bringUp(offered: try features(of: .getFeatures))
    }

    /// A device address this front-end never shared: in grant mode a handle whose grant entry
    /// is free (the device must fault on it, GHT-HDL-01), otherwise an address past the pool.
    /// A driver that puts it in a descriptor is buggy or hostile; the demo does it on purpose.
    public var forbiddenAddress: UInt64 {
        if let grants {
            let free = (GrantReference.reservedCount..<grants.entries.count).reversed().first {
                !grants.isAllocated(GrantReference(rawValue: UInt32($0)))
            }
            return GrantHandle(reference: GrantReference(rawValue: UInt32(free ?? grants.entries.count))).rawValue
        }
        return UInt64(pool.size) + UInt64(GrantHandle.pageSize)
    }

    deinit { close() }

    func features(of message: VhostUserMessage) throws(FrontEndError) -> VirtioFeatures {
        guard case .features(let f) = try request(message) else { throw .protocolViolation("GET_FEATURES") }
        return f
    }
}
