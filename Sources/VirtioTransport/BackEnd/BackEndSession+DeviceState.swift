import VirtioCore
import VirtioSystem
import VhostUser

/// DEVICE_STATE (vhost-user.rst "Migrating back-end state"; Spec/restart.md §4): the device's
/// internal state leaves the source back-end through the front-end's pipe and enters the
/// destination's the same way; CHECK_DEVICE_STATE reports whether it did.
extension BackEndSession {
    /// The u64 of SET_DEVICE_STATE_FD's reply: bits 0–7 the status, bit 8 set (the back-end
    /// uses the front-end's pipe and returns no descriptor).
    private static func stateReply(_ ok: Bool) -> VhostUserAck {
        VhostUserAck(status: VhostUserDeviceStateTransfer.noFileDescriptorFlag | (ok ? 0 : 1))
    }

    /// SET_DEVICE_STATE_FD: starts the transfer (GHT-DST-01..03, GHT-DST-05..06). Refused while
    /// a ring runs: the one phase defined is "stopped".
    func setDeviceStateFD(_ transfer: VhostUserDeviceStateTransfer, fd: FileDescriptor) throws -> VhostUserAck {
        guard protocolFeatures.contains(.deviceState) else { throw Violation("SET_DEVICE_STATE_FD without DEVICE_STATE (GHT-DST-01)") }
        _ = stateTransfer?.finish()   // an earlier transfer never checked: bounded by its timeout
        stateTransfer = nil
        guard !anyQueueStarted else {
            log(.warning, .control, "SET_DEVICE_STATE_FD refused: a ring runs (phase stopped, GHT-DST-03)")
            fd.close()
            return Self.stateReply(false)
        }
        do {
            switch transfer.direction {
            case .save:
                let state = try device.saveState()
                stateTransfer = try DeviceStateTransfer.save(state, into: fd, timeoutMilliseconds: configuration.deviceStateTimeoutMilliseconds,
                                                             start: configuration.startThread)
            case .load:
                stateTransfer = try DeviceStateTransfer.load(from: fd, limit: configuration.maxDeviceStateBytes,
                                                             timeoutMilliseconds: configuration.deviceStateTimeoutMilliseconds,
                                                             start: configuration.startThread)
            }
        } catch {
            log(.warning, .control, "SET_DEVICE_STATE_FD (\(transfer.direction)) refused: \(error)")
            fd.close()
            return Self.stateReply(false)
        }
        return Self.stateReply(true)
    }

    /// CHECK_DEVICE_STATE: waits for the transfer; a loaded state is handed to the device here,
    /// on the session thread, and a state it refuses is a failure (GHT-DST-04, GHT-DST-07).
    func checkDeviceState() throws -> VhostUserAck {
        guard protocolFeatures.contains(.deviceState) else { throw Violation("CHECK_DEVICE_STATE without DEVICE_STATE (GHT-DST-01)") }
        guard let transfer = stateTransfer else {
            log(.warning, .control, "CHECK_DEVICE_STATE without a transfer (GHT-DST-07)")
            return .failure()
        }
        stateTransfer = nil
        do {
            let bytes = try transfer.finish().get()
            if transfer.direction == .load { try device.loadState(bytes) }
            log(.info, .control, "device state \(transfer.direction == .load ? "loaded" : "saved")")
            return .success
        } catch {
            log(.warning, .control, "device state not \(transfer.direction == .load ? "loaded" : "saved"): \(error) (GHT-DST-07)")
            return .failure()
        }
    }
}
