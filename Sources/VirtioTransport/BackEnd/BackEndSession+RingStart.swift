/// When a queue starts (GHT-VU-24): vhost-user.rst's ring states, and what is logged when a
/// queue the front-end meant to start is held back.
extension BackEndSession {
    /// Why queue `i` cannot run now, or nil when it can (and is not running yet).
    ///
    /// GHT-VU-24: vhost-user.rst "Ring states" decide. A ring is started by its kick and, once
    /// VHOST_USER_F_PROTOCOL_FEATURES is negotiated, enabled by SET_VRING_ENABLE; the front-end
    /// does both only after the driver set DRIVER_OK (STAT-DEV-01). SET_STATUS is the front-end's
    /// summary, not a gate: QEMU 7.2 sends DRIVER_OK only for a device whose last queue closes
    /// `vq_index_end` (blk, net); vhost-user-rng and the other generic devices stop at
    /// FEATURES_OK, and a queue waiting for DRIVER_OK would never start. Only a status that
    /// says the device cannot work (DEVICE_NEEDS_RESET, FAILED) holds a queue back.
    func holdBackReason(_ i: Int) -> String? {
        let v = vrings[i]
        guard v.worker == nil else { return nil }
        if ackedFeatures == nil { return "no features yet (SET_FEATURES)" }
        if v.size == nil { return "no size (SET_VRING_NUM)" }
        if v.address == nil { return "no ring addresses (SET_VRING_ADDR)" }
        if v.kick == nil { return "not started: no kick descriptor (SET_VRING_KICK)" }
        if !v.enabled { return "not enabled (VHOST_USER_F_PROTOCOL_FEATURES is negotiated: the ring waits for SET_VRING_ENABLE 1)" }
        // Without STATUS the front-end cannot see DEVICE_NEEDS_RESET; it restarts a broken ring itself.
        guard protocolFeatures.contains(.status) else { return nil }
        let s = status.status
        if s.contains(.deviceNeedsReset) { return "the device needs a reset (DEVICE_NEEDS_RESET)" }
        if s.contains(.failed) { return "the driver gave up on the device (FAILED)" }
        return nil
    }

    func canStart(_ i: Int) -> Bool { vrings[i].worker == nil && holdBackReason(i) == nil }

    func startReadyQueues() throws {
        for i in vrings.indices where canStart(i) { try startQueue(i) }
    }

    /// Logs why queue `i` is not running after a message that should have started it (its kick,
    /// SET_VRING_ENABLE 1, DRIVER_OK), once per reason, so that a queue that never starts is
    /// visible in the log (GHT-VU-24). A ring without a kick is not started yet (QEMU's
    /// vhost-user-net enables its rings long before it configures them): nothing to say.
    func noteIfHeldBack(_ i: Int) {
        guard vrings[i].worker == nil, vrings[i].kick != nil, let reason = holdBackReason(i) else {
            vrings[i].heldBack = nil
            return
        }
        guard vrings[i].heldBack != reason else { return }
        vrings[i].heldBack = reason
        log(.warning, .queueHeldBack, "queue \(i) configured but held back: \(reason)")
    }
}
