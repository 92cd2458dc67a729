import VhostUser
import VirtioCore
import VirtioGrants
import VirtioSystem

extension BackEndSession {
    /// Maps a region the front-end shares: `size` bytes at `mmapOffset` in `fd`. QEMU sends
    /// offsets that are not page-aligned, so the mapping starts at the page below. A file that
    /// refuses a writable mapping (sealed with F_SEAL_FUTURE_WRITE: the front-end's
    /// device-readable pages, GHT-HBE-03) is mapped read-only, and the translators refuse
    /// device writes into it with a fault.
    func map(_ region: VhostUserMemoryRegion, fd: FileDescriptor) throws -> MappedMemoryRegion {
        let page = UInt64(SharedMemory.pageSize)
        let aligned = region.mmapOffset & ~(page - 1)
        let delta = Int(region.mmapOffset - aligned)
        guard region.size <= UInt64(Int.max) - UInt64(delta), aligned <= UInt64(Int.max) else {
            throw Violation("memory region too large: \(region)")
        }
        let mapped: (memory: SharedMemory, writable: Bool)
        do {
            mapped = try SharedMemory.mapAllowingReadOnly(fd: fd, size: Int(region.size) + delta, offset: Int(aligned))
        } catch {
            throw Violation("memory region \(region) cannot be mapped: \(error)")
        }
        return MappedMemoryRegion(descriptor: region, memory: mapped.memory,
                                  range: mapped.memory.range.slice(offset: delta, length: Int(region.size)), writable: mapped.writable)
    }

    /// SET_MEM_TABLE: replaces every region. Refused while a queue runs (its translator points
    /// into the old regions).
    func setMemoryTable(_ table: VhostUserMemoryTable, fds: [FileDescriptor]) throws {
        guard !anyQueueStarted else { throw Violation("SET_MEM_TABLE while queues run") }
        var mapped: [MappedMemoryRegion] = []
        for (region, fd) in zip(table.regions, fds) { mapped.append(try map(region, fd: fd)) }
        try checkNoOverlap(mapped)
        regions = mapped
        try memoryChanged()
    }

    /// ADD_MEM_REG (CONFIGURE_MEM_SLOTS).
    func addMemoryRegion(_ region: VhostUserMemoryRegion, fd: FileDescriptor) throws {
        guard protocolFeatures.contains(.configureMemorySlots) else { throw Violation("ADD_MEM_REG without CONFIGURE_MEM_SLOTS") }
        guard regions.count < configuration.maxMemorySlots else { throw Violation("more than \(configuration.maxMemorySlots) memory regions") }
        let candidate = regions + [try map(region, fd: fd)]
        try checkNoOverlap(candidate)
        regions = candidate
        try memoryChanged()
    }

    /// REM_MEM_REG: removes the region with the same guest address, size and user address.
    func removeMemoryRegion(_ region: VhostUserMemoryRegion) throws {
        guard protocolFeatures.contains(.configureMemorySlots) else { throw Violation("REM_MEM_REG without CONFIGURE_MEM_SLOTS") }
        guard !anyQueueStarted else { throw Violation("REM_MEM_REG while queues run") }
        guard let i = regions.firstIndex(where: { $0.descriptor.guestAddress == region.guestAddress && $0.descriptor.size == region.size
                                                && $0.descriptor.userAddress == region.userAddress }) else {
            throw Violation("REM_MEM_REG of a region that is not registered")
        }
        regions.remove(at: i)
        try memoryChanged()
    }

    /// After the regions changed: no IOVA translation may point into memory that is gone
    /// (GHT-LIFE-01). The IOTLB maps IOVAs to the front-end's user addresses (vhost-user.rst,
    /// "IOMMU support"); every range is resolved again through the new regions, and the ones
    /// that no longer resolve are dropped (a later access misses and is asked for again).
    func memoryChanged() throws {
        let users = try userAddressTranslator()
        iovaSpace.rebind { userAddress, size in
            guard size <= UInt64(Int.max) else { return nil }
            return try? users.translateContiguous(userAddress, length: Int(size), access: .read)
        }
        refreshPeerMemory()
    }

    /// The mappings the queue workers check for truncation (GHT-LIFE-03).
    func refreshPeerMemory() {
        let memory: [any TruncationGuarded] = regions.map(\.memory) + (grants?.guarded ?? []) + (inflight.map { [$0.memory] } ?? [])
        peerMemory.withLock { $0 = memory }
    }

    /// Whether the front-end shrank a file the session maps under it (GHT-LIFE-03).
    var isPeerMemoryPoisoned: Bool { peerMemory.withLock { $0.contains { $0.isPoisoned } } }

    /// Regions may overlap neither in guest-physical nor in user addresses.
    func checkNoOverlap(_ candidate: [MappedMemoryRegion]) throws {
        do {
            _ = try RegionMapTranslator(regions: candidate.map { MappedRegion(start: $0.descriptor.guestAddress, range: $0.range) })
            _ = try RegionMapTranslator(regions: candidate.map { MappedRegion(start: $0.descriptor.userAddress, range: $0.range) })
        } catch {
            throw Violation("memory regions: \(error)")
        }
    }

    /// Guest-physical addresses (descriptors, without ACCESS_PLATFORM).
    func guestPhysicalTranslator() throws -> RegionMapTranslator {
        try RegionMapTranslator(regions: regions.map { MappedRegion(start: $0.descriptor.guestAddress, range: $0.range, writable: $0.writable) })
    }

    /// The front-end's user addresses (ring addresses in SET_VRING_ADDR, IOTLB targets).
    func userAddressTranslator() throws -> RegionMapTranslator {
        try RegionMapTranslator(regions: regions.map { MappedRegion(start: $0.descriptor.userAddress, range: $0.range, writable: $0.writable) })
    }

    // MARK: Grant table (Spec/vhost-user.md §4)

    /// SET_GRANT_TABLE: maps the front-end's grant table and prepares the mapper (GHT-VUG-03).
    /// A table of more entries than ``BackEndConfiguration/maxGrantEntries`` (GHT-LIM-20), or
    /// larger than its file (GHT-LIM-23), is refused; nothing is allocated per entry (GHT-LIM-21).
    func setGrantTable(_ info: VhostUserGrantTable, fd: FileDescriptor) throws -> VhostUserAck {
        guard protocolFeatures.contains(.grantTable) else { throw Violation("SET_GRANT_TABLE without GRANT_TABLE (GHT-VUG-02)") }
        guard !anyQueueStarted else { return .failure() }
        guard info.grantee == configuration.domain else {
            log(.warning, .control, "grant table for \(info.grantee), but this back-end is \(configuration.domain)")
            return .failure()
        }
        guard info.entryCount <= UInt64(max(configuration.maxGrantEntries, 0)) else {
            log(.warning, .control, "grant table of \(info.entryCount) entries: more than \(configuration.maxGrantEntries) (GHT-LIM-20)")
            return .failure()
        }
        guard let frames = grantFrames(info) else {
            log(.warning, .control, "grant table frames at 0x\(String(info.framesGuestAddress, radix: 16)) are not in registered regions")
            return .failure()
        }
        let table: SharedMemory
        do {
            table = try SharedMemory.map(fd: fd, size: Int(info.tableSize), offset: Int(info.tableOffset))
        } catch {
            // GHT-LIM-23: SharedMemory.map checks the window against the file's size (fstat).
            log(.warning, .control, "grant table cannot be mapped: \(error)")
            return .failure()
        }
        let mapper = GrantMapper(table: table.range, granter: info.granter, frames: frames.range, domain: info.grantee,
                                 owners: [table] + frames.owners, readOnlyFrames: frames.readOnly)
        grants = GrantState(info: info, table: table, mapper: mapper, frames: frames.first,
                            guarded: [table] + frames.owners.compactMap { $0 as? any TruncationGuarded })
        refreshPeerMemory()
        report.withLock { $0.granter = info.granter }
        log(.info, .control, "grant table of \(info.granter): \(info.entryCount) entries, \(info.frameCount) frames")
        return .success
    }

    /// REVOKE_GRANTS: no new mapping of the range; the queues drop their cached ones at their
    /// next quiescent point; answered 0 once none is left (GHT-VUG-04, GHT-TLB-01). Nothing is
    /// allocated per reference; the work is bounded by the mapped references (GHT-LIM-22).
    func revokeGrants(_ range: VhostUserGrantRange) -> VhostUserAck {
        guard let grants, UInt64(range.first.rawValue) + UInt64(range.count) <= grants.info.entryCount else { return .failure() }
        // References are 32 bits: a range to 2^32 stops at the last one a handle can name.
        let refs = range.first.rawValue..<UInt32(clamping: UInt64(range.first.rawValue) + UInt64(range.count))
        grants.mapper.requestRevoke(refs)
        // The completions are not reported one by one: the list is emptied whatever the answer.
        defer { _ = grants.mapper.takeCompletedRevocations() }
        let deadline = SystemClock.monotonic.milliseconds + UInt64(configuration.revokeTimeoutMilliseconds)
        while grants.mapper.isRevoking(anyIn: refs) {
            for v in vrings { v.worker?.nudge() }
            guard SystemClock.monotonic.milliseconds < deadline else { return .failure() }
            SystemClock.sleep(milliseconds: 1)
        }
        return .success
    }

    // MARK: IOTLB (vhost-user IOMMU mode)

    /// IOTLB_MSG from the front-end: updates and invalidations of the IOVA space. Refused in
    /// grant mode (GHT-VUG-05).
    func handleIOTLB(_ message: VhostUserIOTLBMessage) throws -> VhostUserAck {
        guard grants == nil else { return .failure() }
        switch message.type {
        case .update:
            let users = try userAddressTranslator()
            // A writable IOVA must land in a writable region (GHT-HBE-03: read-only regions stay read-only).
            let access: MemoryAccess = message.permission == .readOnly ? .read : .write
            guard message.size <= UInt64(Int.max),
                  let host = try? users.translateContiguous(message.userAddress, length: Int(message.size), access: access) else {
                log(.warning, .control, "IOTLB update for user address 0x\(String(message.userAddress, radix: 16)) outside shared memory")
                return .failure()
            }
            let permissions: IOVAPermissions
            switch message.permission {
            case .readOnly: permissions = .read
            case .writeOnly: permissions = .write
            case .readWrite: permissions = .readWrite
            case .none: return .failure()
            }
            do {
                try iovaSpace.update(iova: message.iova, size: message.size, host: host, userAddress: message.userAddress,
                                     permissions: permissions)
            } catch {
                return .failure()
            }
        case .invalidate:
            iovaSpace.invalidate(iova: message.iova, size: message.size)
        default:
            return .failure()
        }
        stopQueuesWhoseRingAreasMoved()
        for v in vrings { v.worker?.nudge() }
        try startReadyQueues()
        return .success
    }

    /// Sends the IOVA misses recorded so far to the front-end on the back-end channel.
    func reportIOTLBMisses() {
        let misses = iovaSpace.takeMisses()
        guard !misses.isEmpty else { return }
        // GHT-LIVE-01: encoded first, then sent without waiting for the front-end.
        sendOnBackEndChannel(misses.compactMap { miss in
            let perm: VhostUserIOTLBPermission = miss.access == .write ? .writeOnly : .readOnly
            return try? VhostUserCodec.encodeIOTLBMiss(iova: miss.iova, permission: perm)
        })
    }
}

/// A registered memory region: what the front-end sent, its mapping, and the region's bytes.
struct MappedMemoryRegion {
    let descriptor: VhostUserMemoryRegion
    let memory: SharedMemory
    let range: HostRange
    /// False for a file that refused a writable mapping: mapped read-only, never written.
    var writable = true
}
