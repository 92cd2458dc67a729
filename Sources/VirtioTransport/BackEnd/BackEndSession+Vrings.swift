import VirtioCore
import VirtioGrants

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
        guard SplitRingLayout.isValidQueueSize(size), size <= device.maxQueueSize else {
            throw Violation("queue size \(size) is not a power of 2 up to \(device.maxQueueSize) (TRN-M-04)")
        }
        vrings[i].size = size
    }

    func setVringAddress(_ address: VhostUserVringAddress) throws {
        let i = try stoppedQueue(address.index, "SET_VRING_ADDR")
        guard address.flags.isEmpty else { throw Violation("dirty logging (VHOST_VRING_F_LOG) is not supported") }
        vrings[i].address = address
    }

    func setVringBase(_ state: VhostUserVringState) throws {
        let i = try stoppedQueue(state.index, "SET_VRING_BASE")
        guard state.num <= UInt32(UInt16.max) else { throw Violation("split ring base \(state.num) beyond 16 bits") }
        vrings[i].base = UInt16(state.num)
    }

    /// GET_VRING_BASE: stops the queue and returns the next available index it would read.
    func getVringBase(_ state: VhostUserVringState) throws -> UInt16 {
        let i = try queue(state.index)
        if vrings[i].worker != nil { vrings[i].base = stopQueue(i).avail }
        vrings[i].kick = nil   // a stopped ring restarts with a new SET_VRING_KICK (vhost-user.rst)
        return vrings[i].base
    }

    /// SET_VRING_KICK, _CALL, _ERR. Polling rings (no kick descriptor) are not supported.
    func setVringFile(_ request: VhostUserRequest, _ file: VhostUserVringFile, fd: FileDescriptor?) throws {
        let i = try queue(UInt32(file.index))
        let notifier: EventNotifier?
        if let fd {
            do {
                notifier = try EventNotifier(adopting: fd)
            } catch {
                throw Violation("\(request) descriptor is not usable: \(error)")
            }
        } else {
            notifier = nil
        }
        let wasRunning = vrings[i].worker != nil
        if wasRunning { vrings[i].base = stopQueue(i).avail }
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
    }

    func setVringEnable(_ state: VhostUserVringState) throws {
        let i = try queue(state.index)
        vrings[i].enabled = state.num == 1
        if !vrings[i].enabled, vrings[i].worker != nil { vrings[i].base = stopQueue(i).avail }
        try startReadyQueues()
    }

    /// Whether queue `i` has everything it needs to run, and the driver said it may (STAT-DEV-01:
    /// nothing is consumed before DRIVER_OK when the status is negotiated).
    func canStart(_ i: Int) -> Bool {
        let v = vrings[i]
        guard v.worker == nil, v.size != nil, v.address != nil, v.kick != nil, v.enabled, ackedFeatures != nil else { return false }
        if protocolFeatures.contains(.status) {
            let s = status.status
            return s.isSuperset(of: [.featuresOK, .driverOK]) && !s.contains(.deviceNeedsReset)
        }
        return true
    }

    func startReadyQueues() throws {
        for i in vrings.indices where canStart(i) { try startQueue(i) }
    }

    /// Starts queue `i`: translates its ring once in the negotiated mode and starts its worker.
    func startQueue(_ i: Int) throws {
        let v = vrings[i]
        let layout = SplitRingLayout(queueSize: v.size!)!
        let a = v.address!
        let addresses = SplitRingAddresses(descriptorTable: a.descriptor, availRing: a.available, usedRing: a.used)
        let features = ackedFeatures!
        let onBroken: @Sendable (VirtqueueError) -> Void = { [weak self, err = v.err] error in self?.queueBroke(i, error, err: err) }
        let started: Bool
        do {
            if features.contains(.accessPlatform), let grants {
                started = try startGrantQueue(i, layout, addresses, features, grants.mapper, onBroken)
            } else if features.contains(.accessPlatform) {
                started = try startIOVAQueue(i, layout, addresses, features, onBroken)
            } else {
                started = try startGuestPhysicalQueue(i, layout, addresses, features, onBroken)
            }
        } catch {
            throw Violation("queue \(i) rings cannot be used: \(error)")
        }
        if started {
            let mode = features.contains(.accessPlatform) ? (grants != nil ? "grant handles" : "IOVAs") : "guest-physical"
            log("queue \(i) started: size \(layout.count), \(mode)")
        }
    }

    private func startWorker<Memory: MemoryTranslator>(_ i: Int, _ queue: SplitDeviceQueue<Memory>, quiescentPoint: (() -> Void)?,
                                                       _ onBroken: @escaping @Sendable (VirtqueueError) -> Void) throws {
        let processor = QueueProcessor(queue: queue, index: i, device: device, quiescentPoint: quiescentPoint)
        vrings[i].worker = try QueueWorker(processor: processor, kick: vrings[i].kick!, call: vrings[i].call,
                                           batchLimit: configuration.batchLimit, onBroken: onBroken)
    }

    /// Grant mode: the ring areas pinned through the mapper, buffers through a per-queue IOTLB.
    private func startGrantQueue(_ i: Int, _ layout: SplitRingLayout, _ addresses: SplitRingAddresses, _ features: VirtioFeatures,
                                 _ mapper: GrantMapper, _ onBroken: @escaping @Sendable (VirtqueueError) -> Void) throws -> Bool {
        let granted = try GrantedSplitRing(layout: layout, addresses: addresses, mapper: mapper)
        let iotlb = GrantIOTLB(mapper: mapper, capacity: configuration.iotlbEntries)
        let queue = SplitDeviceQueue(ring: granted.ring, memory: iotlb.translator, features: features, statusCell: status,
                                     nextAvailIndex: vrings[i].base, usedIndex: granted.ring.usedRing.loadIndex())
        try startWorker(i, queue, quiescentPoint: { iotlb.quiesce() }, onBroken)
        vrings[i].iotlb = iotlb
        vrings[i].keepAlive = [granted, iotlb]
        return true
    }

    /// IOVA mode (vhost-user IOMMU): rings and buffers through the IOVA space. The mode is
    /// miss-driven: a ring not yet mapped is reported as misses, and the queue starts when the
    /// updates arrive (``handleIOTLB(_:)`` retries).
    private func startIOVAQueue(_ i: Int, _ layout: SplitRingLayout, _ addresses: SplitRingAddresses, _ features: VirtioFeatures,
                                _ onBroken: @escaping @Sendable (VirtqueueError) -> Void) throws -> Bool {
        let cache = IOVACache(space: iovaSpace)
        let ring: SplitRing
        switch Result(catching: { () throws(RingSetupError) in try SplitRing(layout: layout, addresses: addresses, memory: cache.translator) }) {
        case .success(let r):
            ring = r
        case .failure(.translation(_, let fault)) where fault.kind == .notMapped:
            reportIOTLBMisses()
            return false
        case .failure(let error):
            throw error
        }
        let queue = SplitDeviceQueue(ring: ring, memory: cache.translator, features: features, statusCell: status,
                                     nextAvailIndex: vrings[i].base, usedIndex: ring.usedRing.loadIndex())
        try startWorker(i, queue, quiescentPoint: { [weak self] in self?.reportIOTLBMisses() }, onBroken)
        vrings[i].iovaCache = cache
        vrings[i].keepAlive = [cache]
        return true
    }

    /// Guest-physical mode: rings at the front-end's user addresses, buffers at guest-physical ones.
    private func startGuestPhysicalQueue(_ i: Int, _ layout: SplitRingLayout, _ addresses: SplitRingAddresses, _ features: VirtioFeatures,
                                         _ onBroken: @escaping @Sendable (VirtqueueError) -> Void) throws -> Bool {
        let ring = try SplitRing(layout: layout, addresses: addresses, memory: try userAddressTranslator())
        let queue = SplitDeviceQueue(ring: ring, memory: try guestPhysicalTranslator(), features: features, statusCell: status,
                                     nextAvailIndex: vrings[i].base, usedIndex: ring.usedRing.loadIndex())
        try startWorker(i, queue, quiescentPoint: nil, onBroken)
        vrings[i].keepAlive = regions.map(\.memory)
        return true
    }

    /// Stops queue `i`'s worker and releases what its translator held; returns where it stopped.
    @discardableResult
    func stopQueue(_ i: Int) -> (avail: UInt16, used: UInt16) {
        guard let worker = vrings[i].worker else { return (vrings[i].base, 0) }
        let position = worker.stop()
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
        vrings[i].iotlb?.invalidateAll()
        vrings[i].worker = nil
        vrings[i].iotlb = nil
        vrings[i].iovaCache = nil
        vrings[i].keepAlive = []
        return position
    }

    /// Stops every queue; with `resetConfiguration`, forgets their configuration too.
    func stopAllQueues(resetConfiguration: Bool) {
        for i in vrings.indices { stopQueue(i) }
        if resetConfiguration { vrings = Array(repeating: Vring(), count: vrings.count) }
    }

    /// A queue broke (on its worker thread): report it, signal the error doorbell, and owe the
    /// driver a configuration-change notification (STAT-DEV-03, GHT-BRK-05).
    func queueBroke(_ i: Int, _ error: VirtqueueError, err: EventNotifier?) {
        report.withLock { $0.brokenQueues[i] = error }
        log("queue \(i) broke: \(error)")
        try? err?.signal()
        if status.status.contains(.driverOK) {
            backendChannel.withLock { channel in
                if let channel, let bytes = try? VhostUserCodec.encode(.configChange) { try? channel.send(bytes) }
            }
        }
    }
}
