import VirtioCore
import VirtioGrants
import VirtioSystem
import VhostUser

extension BackEndSession {
    var anyQueueStarted: Bool { vrings.contains { $0.worker != nil } }

    /// The queue a message names; an index beyond the device's queues is a violation.
    func queue(_ index: UInt32) throws -> Int {
        guard Int(index) < vrings.count else { throw Violation("queue \(index) does not exist (the device has \(vrings.count))") }
        return Int(index)
    }

    /// The queue a configuration message names, which must not be running (TRN-M-03).
    func stoppedQueue(_ index: UInt32, _ what: String) throws -> Int {
        let i = try queue(index)
        guard vrings[i].worker == nil else { throw Violation("\(what) on running queue \(i)") }
        return i
    }

    func setVringSize(_ state: VhostUserVringState) throws {
        let i = try stoppedQueue(state.index, "SET_VRING_NUM")
        let size = Int(state.num)
        try checkQueueSize(size, packed: (ackedFeatures ?? []).contains(.ringPacked))
        vrings[i].size = size
        try startReadyQueues()
    }

    /// TRN-M-04: a split queue's size is a power of 2, a packed queue's any non-zero value, both
    /// up to 32768; GHT-VU-25: neither above the device's maximum, refused as such.
    func checkQueueSize(_ size: Int, packed: Bool) throws {
        if packed {
            guard PackedRingLayout.isValidQueueSize(size) else {
                throw Violation("packed queue size \(size) is not in 1...32768 (TRN-M-04)")
            }
        } else {
            guard SplitRingLayout.isValidQueueSize(size) else {
                throw Violation("queue size \(size) is not a power of 2 up to 32768 (TRN-M-04)")
            }
        }
        guard size <= device.maxQueueSize else {
            throw Violation("queue size \(size) is above the device's maximum of \(device.maxQueueSize) (GHT-VU-25)")
        }
    }

    func setVringAddress(_ address: VhostUserVringAddress) throws {
        if try changeRunningVringLogging(address) { return }
        let i = try stoppedQueue(address.index, "SET_VRING_ADDR")
        vrings[i].address = address
        updateRingLog(i)
        try startReadyQueues()
    }

    func setVringBase(_ state: VhostUserVringState) throws {
        let i = try stoppedQueue(state.index, "SET_VRING_BASE")
        // GHT-PKD-08: a packed ring's base carries both positions with their wrap counters;
        // it is checked against the queue size when the queue starts.
        guard (ackedFeatures ?? []).contains(.ringPacked) || state.num <= UInt32(UInt16.max) else {
            throw Violation("split ring base \(state.num) beyond 16 bits")
        }
        vrings[i].base = state.num
        vrings[i].positionAtReset = nil
    }

    /// GET_VRING_BASE: stops the queue and returns where it stopped — for a split ring the next
    /// available index; for a packed ring both positions and wrap counters (GHT-PKD-08).
    func getVringBase(_ state: VhostUserVringState) throws -> UInt32 {
        let i = try queue(state.index)
        if vrings[i].worker != nil {
            vrings[i].base = stopQueue(i)
            log(.info, .queueStopped, "queue \(i) stopped (GET_VRING_BASE) at \(vrings[i].base)")
        }
        vrings[i].kick = nil   // a stopped ring restarts with a new SET_VRING_KICK (vhost-user.rst)
        if let position = vrings[i].positionAtReset { return position }
        return vrings[i].base
    }

    /// SET_VRING_KICK, _CALL, _ERR. Polling rings (no kick descriptor) are not supported.
    func setVringFile(_ request: VhostUserRequest, _ file: VhostUserVringFile, fd: FileDescriptor?) throws {
        let i = try queue(UInt32(file.index))
        let notifier: Doorbell?
        if let fd {
            do {
                notifier = try Doorbell(adopting: fd)
            } catch {
                throw Violation("\(request) descriptor is not usable: \(error)")
            }
        } else {
            notifier = nil
        }
        let wasRunning = vrings[i].worker != nil
        if wasRunning {
            vrings[i].base = stopQueue(i)
            vrings[i].restarting = true   // its new start is logged at debug, not as a start
        }
        switch request {
        case .setVringKick:
            guard let notifier else { throw Violation("SET_VRING_KICK without a descriptor: polling is not supported") }
            vrings[i].kick = notifier
            // Without protocol features a ring is enabled by its kick (vhost-user.rst "Ring states").
            if !(ackedFeatures ?? []).contains(.vhostUserProtocolFeatures) { vrings[i].enabled = true }
        case .setVringCall: vrings[i].call = notifier
        default: vrings[i].err = notifier
        }
        try startReadyQueues()
        if request == .setVringKick && vrings[i].enabled { noteIfHeldBack(i) }
    }

    func setVringEnable(_ state: VhostUserVringState) throws {
        let i = try queue(state.index)
        vrings[i].enabled = state.num == 1
        if !vrings[i].enabled, vrings[i].worker != nil {
            vrings[i].base = stopQueue(i)
            log(.info, .queueStopped, "queue \(i) stopped (SET_VRING_ENABLE 0) at \(vrings[i].base)")
        }
        try startReadyQueues()
        if vrings[i].enabled { noteIfHeldBack(i) }
    }

    /// Starts queue `i`: translates its ring once in the negotiated mode and format and
    /// starts its worker.
    func startQueue(_ i: Int) throws {
        // GHT-LIFE-03: memory the front-end truncated is never used again.
        guard !isPeerMemoryPoisoned else {
            throw Violation("queue \(i) not started: the front-end shrank a shared file under its mapping (GHT-LIFE-03)")
        }
        let v = vrings[i]
        let a = v.address!
        let features = ackedFeatures!
        let packed = features.contains(.ringPacked)
        try checkQueueSize(v.size!, packed: packed)
        // GHT-PKD-08, GHT-QST-04: the base as SET_VRING_BASE gave it, decoded into where the
        // queue resumes (a split ring's used index is the one in its used ring, read at start).
        let state: QueueState
        do {
            state = try QueueState(vhostUserBase: v.base, format: packed ? .packed : .split, size: v.size!,
                                   descriptorArea: a.descriptor, driverArea: a.available, deviceArea: a.used,
                                   eventIndex: features.contains(.eventIndex))
        } catch {
            switch error {
            case .splitBaseBeyond16Bits:
                // A base accepted while RING_PACKED was negotiated, then features renegotiated.
                throw Violation("split ring base \(v.base) beyond 16 bits")
            default:
                throw Violation("packed ring base 0x\(String(v.base, radix: 16)) names a slot beyond the queue size \(v.size!)")
            }
        }
        let onBroken: @Sendable (VirtqueueError) -> Void = { [weak self, err = v.err] error in self?.queueBroke(i, error, err: err) }
        let started: Bool
        do {
            if features.contains(.accessPlatform), let grants {
                started = try startGrantQueue(i, state, features, grants.mapper, onBroken)
            } else if features.contains(.accessPlatform) {
                started = try startIOVAQueue(i, state, features, onBroken)
            } else {
                started = try startGuestPhysicalQueue(i, state, features, onBroken)
            }
        } catch {
            if isPeerMemoryPoisoned {
                throw Violation("queue \(i) not started: the front-end shrank a shared file under its mapping (GHT-LIFE-03)")
            }
            throw Violation("queue \(i) rings cannot be used: \(error)")
        }
        if started {
            updateRingLog(i)
            let mode = features.contains(.accessPlatform) ? (grants != nil ? "grant handles" : "IOVAs") : "guest-physical"
            let restart = vrings[i].restarting
            vrings[i].restarting = false
            log(restart ? .debug : .info, .queueStarted,
                "queue \(i) \(restart ? "restarted with a new descriptor" : "started"): \(packed ? "packed" : "split"), size \(v.size!), \(mode)")
        }
    }

    /// Makes the device side of queue `i` over `ring` and starts its worker, resuming at
    /// `state` (GHT-QST-04; a split ring's used index is the one in its used ring).
    /// `keepAlive`: what the queue's memory lives in, held by requests the device keeps
    /// (GHT-ASY-05) as well as by the session.
    private func startWorker<Memory: MemoryTranslator>(_ i: Int, _ ring: QueueRing, _ state: QueueState, memory: Memory,
                                                       _ features: VirtioFeatures, quiescentPoint: (() -> Void)?,
                                                       keepAlive: [AnyObject],
                                                       _ onBroken: @escaping @Sendable (VirtqueueError) -> Void) throws {
        var state = state
        vrings[i].keepAlive = keepAlive
        let keepAlive = keepAlive + regions.map(\.memory) + (grants.map { [$0.table, $0.mapper, $0.frames] } ?? [])
            + (inflight.map { [$0.memory] } ?? [])
        switch ring {
        case .split(let ring):
            state.nextUsed = ring.usedRing.loadIndex()
            var queue = try SplitDeviceQueue(ring: ring, memory: memory, features: features, statusCell: status, state: state)
            trackInflight(i, &queue)
            try startWorker(i, queue, quiescentPoint: quiescentPoint, keepAlive: keepAlive, onBroken)
        case .packed(let ring):
            var queue = try PackedDeviceQueue(ring: ring, memory: memory, features: features, statusCell: status, state: state)
            trackInflight(i, &queue)
            try startWorker(i, queue, quiescentPoint: quiescentPoint, keepAlive: keepAlive, onBroken)
        }
    }

    private func startWorker<Queue: DeviceQueue & ~Copyable>(_ i: Int, _ queue: consuming Queue, quiescentPoint: (() -> Void)?,
                                                 keepAlive: [AnyObject], _ onBroken: @escaping @Sendable (VirtqueueError) -> Void) throws {
        let processor = QueueProcessor(queue: queue, index: i, device: device, quiescentPoint: quiescentPoint,
                                       isMemoryPoisoned: { [weak self] in self?.isPeerMemoryPoisoned ?? true }, keepAlive: keepAlive,
                                       dirtyLog: dirtyLog)
        let worker: QueueWorker
        do {
            worker = try QueueWorker(processor: processor, kick: vrings[i].kick!, call: vrings[i].call,
                                     batchLimit: configuration.batchLimit, execution: configuration.execution,
                                     pool: configuration.queueThreads,
                                     cpus: configuration.workerCPUs.isEmpty ? [] : [configuration.workerCPUs[i % configuration.workerCPUs.count]],
                                     drainTimeoutMilliseconds: configuration.inFlightDrainTimeoutMilliseconds,
                                     startThread: configuration.startThread,
                                     onBroken: onBroken, onKickLost: { [weak self] in
                                         self?.end(.violation("queue \(i): the kick descriptor hung up or failed"))
                                     })
        } catch {
            // GHT-LIM-41: no thread for the queue ends this session, never the process.
            forcedEnd.withLock { if $0 == nil { $0 = .refused("queue \(i) cannot start: \(error)") } }
            throw Violation("queue \(i) cannot start: \(error)")
        }
        vrings[i].worker = worker
        vrings[i].heldBack = nil
        queueEverStarted = true
        device.queueStarted(i, doorbell: worker.doorbell)
        if let event = device.completionEvent(queue: i) {
            do {
                try worker.watchCompletions(event)
            } catch {
                throw Violation("queue \(i) cannot watch the device's completion event: \(error)")
            }
        }
    }

    /// Grant mode: the ring areas pinned through the mapper, buffers through a per-queue IOTLB.
    private func startGrantQueue(_ i: Int, _ state: QueueState, _ features: VirtioFeatures, _ mapper: GrantMapper,
                                 _ onBroken: @escaping @Sendable (VirtqueueError) -> Void) throws -> Bool {
        let geometry = RingGeometry(state)
        let ring: QueueRing
        let pinned: AnyObject
        switch geometry {
        case .split(let layout, let addresses):
            let granted = try GrantedSplitRing(layout: layout, addresses: addresses, mapper: mapper)
            (ring, pinned) = (.split(granted.ring), granted)
        case .packed(let layout, let addresses):
            let granted = try GrantedPackedRing(layout: layout, addresses: addresses, mapper: mapper)
            (ring, pinned) = (.packed(granted.ring), granted)
        }
        let iotlb = GrantIOTLB(mapper: mapper, capacity: configuration.iotlbEntries, parkingCapacity: configuration.iotlbParkedEntries)
        try startWorker(i, ring, state, memory: iotlb.translator, features, quiescentPoint: { iotlb.quiesce() },
                        keepAlive: [pinned, iotlb], onBroken)
        vrings[i].iotlb = iotlb
        return true
    }

    /// IOVA mode (vhost-user IOMMU): rings and buffers through the IOVA space. The mode is
    /// miss-driven: a ring not yet mapped is reported as misses, and the queue starts when the
    /// updates arrive (``handleIOTLB(_:)`` retries).
    private func startIOVAQueue(_ i: Int, _ state: QueueState, _ features: VirtioFeatures,
                                _ onBroken: @escaping @Sendable (VirtqueueError) -> Void) throws -> Bool {
        let geometry = RingGeometry(state)
        let cache = IOVACache(space: iovaSpace)
        let ring: QueueRing
        switch Result(catching: { () throws(RingSetupError) in try geometry.resolve(through: cache.translator) }) {
        case .success(let r):
            ring = r
        case .failure(.translation(_, let fault)) where fault.kind == .notMapped:
            reportIOTLBMisses()
            return false
        case .failure(let error):
            throw error
        }
        // Read before the worker starts: the cache is the worker's alone from then on.
        let areas = ringAreaTranslations(geometry.areas)
        try startWorker(i, ring, state, memory: cache.translator, features, quiescentPoint: { [weak self] in self?.reportIOTLBMisses() },
                        keepAlive: [cache], onBroken)
        vrings[i].iovaCache = cache
        vrings[i].iovaRingAreas = areas
        return true
    }

    /// Guest-physical mode: rings at the front-end's user addresses, buffers at guest-physical ones.
    private func startGuestPhysicalQueue(_ i: Int, _ state: QueueState, _ features: VirtioFeatures,
                                         _ onBroken: @escaping @Sendable (VirtqueueError) -> Void) throws -> Bool {
        let geometry = RingGeometry(state)
        let ring = try geometry.resolve(through: try userAddressTranslator())
        try startWorker(i, ring, state, memory: try guestPhysicalTranslator(), features, quiescentPoint: nil,
                        keepAlive: regions.map(\.memory), onBroken)
        return true
    }

    /// Stops queue `i`'s worker and releases what its translator held; returns where it stopped.
    @discardableResult
    func stopQueue(_ i: Int) -> UInt32 {
        guard let worker = vrings[i].worker else { return vrings[i].base }
        // GHT-QST-04: GET_VRING_BASE's value is the stopped queue's state, encoded.
        let position = worker.stop()?.vhostUserBase ?? 0
        device.queueStopped(i)
        let abandoned = worker.abandonedAtStop
        if abandoned > 0 {
            log(.error, .queueStopped, "queue \(i): \(abandoned) requests still inside the device after \(configuration.inFlightDrainTimeoutMilliseconds) ms; their completions will be ignored (GHT-ASY-04)")
        }
        let s = worker.statistics
        let tlb = vrings[i].iotlb?.statistics
        report.withLock { r in
            r.chains += s.chainCount
            r.notifications += s.notificationCount
            r.kicks += s.kickCount
            r.workerCPUSeconds += s.cpuSeconds
            if let tlb {
                r.iotlbHits += tlb.hits
                r.iotlbMisses += tlb.misses
                for (k, n) in tlb.faults { r.faults[k, default: 0] += n }
            }
        }
        // Mappings a request abandoned inside the device may still reach stay until it lets
        // them go (GHT-ASY-05).
        if abandoned == 0 { vrings[i].iotlb?.invalidateAll() }
        vrings[i].worker = nil
        vrings[i].iotlb = nil
        vrings[i].iovaCache = nil
        vrings[i].iovaRingAreas = []
        vrings[i].keepAlive = []
        return position
    }

    /// GHT-LIFE-02: a queue whose ring areas were translated at start through IOVAs stops when
    /// an IOTLB change moved or removed the translation of any of them (the pointers it holds
    /// are no longer the front-end's ring); it resumes where it stopped once the areas translate
    /// again (``startReadyQueues()``, miss-driven like a first start). A change elsewhere, or one
    /// that maps an area to the same bytes, leaves it running.
    func stopQueuesWhoseRingAreasMoved() {
        for i in vrings.indices where vrings[i].worker != nil && !vrings[i].iovaRingAreas.isEmpty {
            let now = ringAreaTranslations(vrings[i].iovaRingAreas.map { ($0.start, $0.size, $0.access) })
            let unchanged = zip(now, vrings[i].iovaRingAreas).allSatisfy { $0.host != 0 && $0.host == $1.host }
            guard !unchanged else { continue }
            vrings[i].base = stopQueue(i)
            log(.warning, .queueStopped, "queue \(i) stopped: an IOTLB change moved or removed its ring areas (GHT-LIFE-02)")
        }
    }

    /// Where `areas` translate now (host address 0: not wholly mapped with that access), through
    /// a cache of the session thread's own: a queue's cache belongs to its worker.
    func ringAreaTranslations(_ areas: [(start: UInt64, size: Int, access: MemoryAccess)])
        -> [(start: UInt64, size: Int, access: MemoryAccess, host: UInt)] {
        let cache = IOVACache(space: iovaSpace, capacity: 1)
        return withExtendedLifetime(cache) {
            areas.map { area in
                let range = cache.translator.resolve(area.start, length: area.size, access: area.access).range
                return (area.start, area.size, area.access, range.map { $0.count == area.size ? $0.startAddress : 0 } ?? 0)
            }
        }
    }

    /// Stops every queue; with `resetConfiguration`, forgets their configuration too.
    func stopAllQueues(resetConfiguration: Bool) {
        for i in vrings.indices { stopQueue(i) }
        if resetConfiguration { vrings = Array(repeating: Vring(), count: vrings.count) }
    }

    /// A queue broke (on its worker thread): report it, signal the error doorbell, and owe the
    /// driver a configuration-change notification (STAT-DEV-03, GHT-BRK-05).
    func queueBroke(_ i: Int, _ error: VirtqueueError, err: Doorbell?) {
        report.withLock { $0.brokenQueues[i] = error }
        log(.error, .queueBroken, "queue \(i) broke: \(error)")
        if case .memoryFault(let fault) = error, fault.kind == .memoryLost {
            // GHT-LIFE-03: the front-end truncated shared memory; the session ends.
            report.withLock { $0.memoryLost = true }
            end(.violation("the front-end shrank shared memory under the back-end (GHT-LIFE-03)"))
        }
        try? err?.signal()
        if status.status.contains(.driverOK), let bytes = try? VhostUserCodec.encode(.configChange) {
            sendOnBackEndChannel([bytes])   // GHT-LIVE-01: never waits for the front-end
        }
    }
}

/// A queue's ring as the front-end configured it: format, size and device-visible addresses.
enum RingGeometry {
    case split(SplitRingLayout, SplitRingAddresses)
    case packed(PackedRingLayout, PackedRingAddresses)

    /// The ring `state` names (a validated state: its size is legal for its format).
    init(_ state: QueueState) {
        switch state.format {
        case .split: self = .split(SplitRingLayout(queueSize: state.size)!, state.splitAddresses)
        case .packed: self = .packed(PackedRingLayout(queueSize: state.size)!, state.packedAddresses)
        }
    }

    /// The ring's areas translated once through `memory`.
    func resolve<Memory: MemoryTranslator>(through memory: Memory) throws(RingSetupError) -> QueueRing {
        switch self {
        case .split(let layout, let addresses): return .split(try SplitRing(layout: layout, addresses: addresses, memory: memory))
        case .packed(let layout, let addresses): return .packed(try PackedRing(layout: layout, addresses: addresses, memory: memory))
        }
    }
}

extension RingGeometry {
    /// The device-visible ranges of the ring's areas, with the access the device needs.
    var areas: [(start: UInt64, size: Int, access: MemoryAccess)] {
        switch self {
        case .split(let layout, let a):
            return [(a.descriptorTable, layout.descriptorTableSize, .read), (a.availRing, layout.availRingSize, .read),
                    (a.usedRing, layout.usedRingSize, .write)]
        case .packed(let layout, let a):
            return [(a.descriptorRing, layout.descriptorRingSize, .write), (a.driverEventArea, PackedRingLayout.eventAreaSize, .read),
                    (a.deviceEventArea, PackedRingLayout.eventAreaSize, .write)]
        }
    }
}

/// A queue's ring, resolved to host memory.
enum QueueRing {
    case split(SplitRing)
    case packed(PackedRing)
}
