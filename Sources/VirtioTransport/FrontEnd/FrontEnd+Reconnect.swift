import VirtioCore
import VirtioGrants
import VirtioSystem
import VhostUser

/// Reconnecting to a back-end restarted at the same socket path (Spec/restart.md §2,
/// GHT-RCN-01..): what QEMU does with `-chardev socket,...,reconnect=N`, for our front-end.
///
/// The guest's side survives a back-end's death whole: the pool with the rings and buffers,
/// the grant table, the in-flight region, the doorbells. A reconnection connects again and
/// replays the setup over them — protocol features, owner, memory table, grant table,
/// features and status, the in-flight region, each queue's size, addresses and base (the used
/// position the front-end sees), kick, call, err and enable, DRIVER_OK — then kicks every
/// queue once. The new back-end resubmits what was in flight from the in-flight region, so
/// each request completes once; what the caller already got back is never handed out again.
extension FrontEnd {
    /// Called when a queue's wait saw the connection end: reconnects under the policy (or
    /// waits for the thread that does), or throws ``FrontEndError/disconnected`` without one.
    func backEndWentAway(seenGeneration: Int) throws(FrontEndError) {
        guard configuration.reconnect != nil else { throw .disconnected }
        try recover(after: seenGeneration)
    }

    /// Reconnects unless another thread did since `generation` was read; rethrows the failure
    /// of a reconnection that gave up.
    func recover(after generation: Int) throws(FrontEndError) {
        guard let policy = configuration.reconnect, let socketPath else { throw .disconnected }
        try recovery.withLock { _ throws(FrontEndError) in
            if let resumeFailure { throw resumeFailure }
            guard connectionGeneration.load(ordering: .acquiring) == generation else { return }
            guard resumable, !closed else { throw .disconnected }
            do throws(FrontEndError) {
                try reconnect(to: socketPath, policy)
            } catch {
                resumeFailure = error
                abandon()
                throw error
            }
        }
    }

    /// The number of times the front-end reconnected to a restarted back-end.
    public var reconnectCount: Int { connectionGeneration.load(ordering: .acquiring) }

    /// Connects again until a back-end takes over or the policy's time runs out (GHT-RCN-02).
    private func reconnect(to path: String, _ policy: FrontEndReconnectPolicy) throws(FrontEndError) {
        let deadline = Timeout(milliseconds: policy.timeLimitMilliseconds)
        // The queues stop watching a connection before it is closed: its number may be reused.
        for q in queues { q.unwatchConnection(channel.socket) }
        channel.socket.close()
        var last: FrontEndError = .disconnected
        replaying = true
        defer { replaying = false }
        while true {
            // Taken on every attempt: a back-end killed during the replay may have mapped
            // grants and completed requests. The gone connection's mappings ended with it
            // (GHT-RCN-07): its successor gets a table whose in-use bits are its own.
            grants?.releaseMappings(of: configuration.backEndDomain)
            let positions = try queues.map { q throws(FrontEndError) in try q.prepareResume() }
            try checkResumable(positions)
            guard deadline.remainingMilliseconds() > 0 else { throw .timedOut("reconnecting to \(path): \(last)") }
            do throws(FrontEndError) {
                let socket = try Self.connectSocket(path, timeoutMilliseconds: configuration.timeoutMilliseconds)
                channel = VhostUserChannel(socket: socket)
                closed = false
                for q in queues { try q.watchConnection(socket) }
                try replaySetup(positions)
                connectionGeneration.add(1, ordering: .releasing)
                return
            } catch {
                switch error {
                case .cannotResume, .negotiation, .refused, .protocolViolation, .queue, .sharedMemory, .grant, .system, .exhausted, .deviceNeedsReset:
                    throw error
                case .disconnected, .timedOut, .socket:
                    // Nothing listens yet, or the back-end went away again during the replay.
                    last = error
                    for q in queues { q.unwatchConnection(channel.socket) }
                    channel.socket.close()
                    SystemClock.sleep(milliseconds: Int(min(policy.retryIntervalMilliseconds, max(deadline.remainingMilliseconds(), 1))))
                }
            }
        }
    }

    /// GHT-RCN-06: requests a back-end may have taken from the ring survive its death only
    /// through the in-flight region, unless the device completes in order (the next back-end
    /// then takes them again from the used index, as QEMU's reconnect does).
    private func checkResumable(_ positions: [(base: UInt32, outstanding: Int)]) throws(FrontEndError) {
        let outstanding = positions.reduce(0) { $0 + $1.outstanding }
        guard outstanding > 0, inflightArea == nil, !features.contains(.inOrder) else { return }
        throw .cannotResume("\(outstanding) request(s) in flight, and the back-end keeps no in-flight region "
                            + "(INFLIGHT_SHMFD not negotiated) while its device may complete out of order: they would be lost or repeated")
    }

    /// The setup again, over the memory, table and queues that survived (GHT-RCN-03).
    private func replaySetup(_ positions: [(base: UInt32, outstanding: Int)]) throws(FrontEndError) {
        // GHT-RCN-05: the new back-end must offer every feature the device runs with.
        let offered = try features(of: .getFeatures)
        guard offered.isSuperset(of: features.union(.vhostUserProtocolFeatures)) else {
            throw .cannotResume("the back-end no longer offers \(features.union(.vhostUserProtocolFeatures).subtracting(offered))")
        }
        guard case .protocolFeatures(let protocolOffered) = try request(.getProtocolFeatures) else { throw .protocolViolation("GET_PROTOCOL_FEATURES") }
        guard protocolOffered.isSuperset(of: protocolFeatures) else {
            throw .cannotResume("the back-end no longer offers protocol features \(protocolFeatures.subtracting(protocolOffered))")
        }
        try request(.setProtocolFeatures(protocolFeatures))
        try request(.setOwner)
        guard case .queueCount(let count) = try request(.getQueueNum), count >= queues.count else {
            throw .cannotResume("the back-end has fewer than \(queues.count) queues")
        }
        try shareMemory()
        let before = writtenStatus
        try setStatus([.acknowledge])
        try setStatus([.acknowledge, .driver])
        try request(.setFeatures(features.union(.vhostUserProtocolFeatures)))
        try setStatus([.acknowledge, .driver, .featuresOK])
        guard try status().contains(.featuresOK) else { throw .cannotResume("FEATURES_OK did not stick") }
        // GHT-RCN-03: the area the dead back-end recorded its requests in, to the new one
        // before any ring (SET_INFLIGHT_FD; QEMU's order).
        try shareInflightArea()
        for (q, p) in zip(queues, positions) { try q.sendRing(base: p.base) }
        if before.contains(.driverOK) { try setStatus([.acknowledge, .driver, .featuresOK, .driverOK]) }
        for q in queues { try q.kickOnce() }
    }

    /// A connection to `path` with the control timeout set.
    static func connectSocket(_ path: String, timeoutMilliseconds: Int32) throws(FrontEndError) -> UnixSocket {
        do {
            let socket = try UnixSocket.connect(path: path)
            do {
                try socket.setReceiveTimeout(milliseconds: timeoutMilliseconds)
            } catch {
                socket.close()
                throw error
            }
            return socket
        } catch let error as UnixSocketError {
            throw .socket(error)
        } catch {
            throw .disconnected
        }
    }
}
