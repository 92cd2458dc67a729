import VirtioCore
import VirtioSystem
import VhostUser

/// Dirty-page logging for live migration (vhost-user.rst "Migration"; Spec/restart.md §3): the
/// log the front-end shares, VHOST_F_LOG_ALL, VHOST_VRING_F_LOG and the log eventfd. The queue
/// workers mark through ``BackEndSession/dirtyLog``; everything here runs on the session thread.
extension BackEndSession {
    /// The memory table as the log sees it: guest-physical start, size and host address.
    var logRegions: [(guest: UInt64, size: UInt64, host: UInt)] {
        regions.map { ($0.descriptor.guestAddress, $0.descriptor.size, $0.range.startAddress) }
    }

    /// SET_LOG_BASE (LOG_SHMFD): maps the log and checks it against the file (fstat) and the
    /// memory table (GHT-LOG-03). A refused log is answered with a failure and logging stops
    /// until a usable one comes: marks nobody reads are worth nothing.
    func setLogBase(_ area: VhostUserLogArea, fd: FileDescriptor) throws -> VhostUserAck {
        guard protocolFeatures.contains(.logSharedMemory) else { throw Violation("SET_LOG_BASE without LOG_SHMFD (GHT-LOG-01)") }
        do {
            let log = try DirtyLog.map(area, fd: fd, regions: logRegions)
            dirtyLog.setLog(log)
            refreshPeerMemory()
            self.log(.info, .control, "dirty log of \(area.size) bytes (guest memory up to 0x\(String(log.bitmap.coveredEnd, radix: 16)))")
            return .success
        } catch {
            dirtyLog.setLog(nil)
            refreshPeerMemory()
            self.log(.warning, .control, "SET_LOG_BASE refused: \(error) (GHT-LOG-03)")
            return .failure()
        }
    }

    /// SET_LOG_FD: the eventfd signalled after a batch marked the log (GHT-LOG-09).
    func setLogFD(_ fd: FileDescriptor) throws {
        do {
            dirtyLog.setDoorbell(try Doorbell(adopting: fd))
        } catch {
            throw Violation("SET_LOG_FD descriptor is not usable: \(error)")
        }
    }

    /// Whether `features` differ from the accepted ones in VHOST_F_LOG_ALL alone: the one
    /// change QEMU makes while the rings run (vhost_dev_set_log).
    func changesOnlyLogging(_ features: VirtioFeatures) -> Bool {
        guard let acked = ackedFeatures else { return false }
        return acked.symmetricDifference(features).isSubset(of: .vhostLogAll)
    }

    /// VHOST_F_LOG_ALL set or cleared (GHT-LOG-11, GHT-LOG-12).
    func setLogAll(_ on: Bool) {
        guard dirtyLog.logAll != on else { return }
        dirtyLog.setLogAll(on)
        log(.info, .control, "dirty logging \(on ? "on" : "off")\(on && dirtyLog.log == nil ? " (no log yet)" : "")")
    }

    /// After the memory table changed: the log must still cover it (GHT-LOG-04); one that does
    /// not is dropped, and logging stops until SET_LOG_BASE gives a larger one.
    func refreshDirtyLogRegions() {
        guard let current = dirtyLog.log else { return }
        do {
            dirtyLog.setLog(try current.over(logRegions))
        } catch {
            dirtyLog.setLog(nil)
            log(.error, .control, "dirty log dropped after the memory table changed: \(error) (GHT-LOG-04)")
        }
    }

    /// SET_VRING_ADDR on a running ring that changes only its flags and log address (QEMU
    /// turns VHOST_VRING_F_LOG on and off while the rings run). Returns false for any other
    /// SET_VRING_ADDR, which the ring's usual rules handle.
    func changeRunningVringLogging(_ address: VhostUserVringAddress) throws -> Bool {
        let i = try queue(address.index)
        guard vrings[i].worker != nil, let old = vrings[i].address, old.descriptor == address.descriptor,
              old.used == address.used, old.available == address.available else { return false }
        vrings[i].address = address
        updateRingLog(i)
        log(.debug, .control, "queue \(i): used-ring logging \(address.flags.contains(.log) ? "on" : "off")")
        return true
    }

    /// The guest-physical areas of queue `i`'s ring the back-end writes (GHT-LOG-06, GHT-LOG-07).
    func updateRingLog(_ i: Int) {
        dirtyLog.setRing(i, ringLogAreas(i))
    }

    private func ringLogAreas(_ i: Int) -> RingLogAreas {
        guard let a = vrings[i].address, let size = vrings[i].size else { return .none }
        let packed = (ackedFeatures ?? []).contains(.ringPacked)
        if !packed {
            guard a.flags.contains(.log), let layout = SplitRingLayout(queueSize: size) else { return .none }
            return RingLogAreas(first: (a.log, layout.usedRingSize))
        }
        guard let layout = PackedRingLayout(queueSize: size) else { return .none }
        var areas = RingLogAreas()
        if let ring = ringGuestAddress(i, a.descriptor, area: 0) { areas.first = (ring, layout.descriptorRingSize) }
        if let event = a.flags.contains(.log) ? a.log : ringGuestAddress(i, a.used, area: 2) {
            areas.second = (event, PackedRingLayout.eventAreaSize)
        }
        return areas
    }

    /// The guest-physical address of a ring area given as a user address (or, in IOVA mode, as
    /// the IOVA whose translation the queue's start recorded), through the memory table.
    private func ringGuestAddress(_ i: Int, _ address: UInt64, area: Int) -> UInt64? {
        let features = ackedFeatures ?? []
        if features.contains(.accessPlatform) {
            guard grants == nil, vrings[i].iovaRingAreas.indices.contains(area) else { return nil }
            let host = vrings[i].iovaRingAreas[area].host
            return regions.first { host >= $0.range.startAddress && host - $0.range.startAddress < UInt($0.range.count) }
                .map { $0.descriptor.guestAddress + UInt64(host - $0.range.startAddress) }
        }
        return regions.first { address >= $0.descriptor.userAddress && address - $0.descriptor.userAddress < $0.descriptor.size }
            .map { $0.descriptor.guestAddress + (address - $0.descriptor.userAddress) }
    }
}
