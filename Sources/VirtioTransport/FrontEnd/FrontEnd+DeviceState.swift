import VirtioCore
import VirtioSystem
import VhostUser

/// DEVICE_STATE from the front-end's side (vhost-user.rst "Migrating back-end state";
/// Spec/restart.md §4): what a migration's front-ends do to move a device's internal state
/// from the source back-end to the destination back-end. Both need every queue stopped
/// (``stopQueue(_:)``): the one transfer phase vhost-user.rst defines is "stopped".
extension FrontEnd {
    /// Reads the back-end's device state through a pipe (SET_DEVICE_STATE_FD, direction save),
    /// at most `limit` bytes, then asks whether the back-end saved it whole (CHECK_DEVICE_STATE).
    public func saveDeviceState(limit: Int = 1 << 20) throws(FrontEndError) -> [UInt8] {
        guard protocolFeatures.contains(.deviceState) else { throw .negotiation("DEVICE_STATE is not offered") }
        let pipe: Pipe
        do { pipe = try Pipe() } catch { throw .system(error) }
        defer { pipe.readEnd.close() }
        do {
            try request(.setDeviceStateFD(VhostUserDeviceStateTransfer(direction: .save)), fds: [pipe.writeEnd.rawValue])
        } catch {
            pipe.writeEnd.close()
            throw error
        }
        pipe.writeEnd.close()   // the back-end's copy is the only writer: its close is the end
        let state: [UInt8]
        do {
            state = try pipe.readEnd.readToEnd(limit: limit, timeoutMilliseconds: transferTimeout)
        } catch {
            throw .protocolViolation("device state: \(error)")
        }
        try request(.checkDeviceState)
        return state
    }

    /// Sends `state` to the back-end through a pipe (SET_DEVICE_STATE_FD, direction load), then
    /// asks whether it took it (CHECK_DEVICE_STATE): ``FrontEndError/refused(_:)`` when the
    /// device refused the state.
    public func loadDeviceState(_ state: [UInt8]) throws(FrontEndError) {
        guard protocolFeatures.contains(.deviceState) else { throw .negotiation("DEVICE_STATE is not offered") }
        let pipe: Pipe
        do { pipe = try Pipe() } catch { throw .system(error) }
        do {
            try request(.setDeviceStateFD(VhostUserDeviceStateTransfer(direction: .load)), fds: [pipe.readEnd.rawValue])
        } catch {
            pipe.readEnd.close()
            pipe.writeEnd.close()
            throw error
        }
        pipe.readEnd.close()
        // A thread of its own writes, with SIGPIPE blocked there only: a back-end that hung up
        // is an error, not the end of the caller's process.
        let timeout = transferTimeout
        let failure = TransferFailure()
        let writer = WorkerThread(name: "virtio-state-send") {
            FileDescriptor.blockBrokenPipeSignalOnThisThread()
            do throws(StreamTransferError) {
                try pipe.writeEnd.writeAll(state, timeoutMilliseconds: timeout)
            } catch {
                failure.error = error
            }
            pipe.writeEnd.close()
        }
        writer.join()   // orders the thread's write of `failure` before this read
        if let error = failure.error { throw .protocolViolation("device state: \(error)") }
        try request(.checkDeviceState)
    }

    private var transferTimeout: Int32 { configuration.timeoutMilliseconds > 0 ? configuration.timeoutMilliseconds : 5_000 }
}

/// The writer thread's failure, read after it was joined.
private final class TransferFailure: @unchecked Sendable {
    var error: StreamTransferError?
}
