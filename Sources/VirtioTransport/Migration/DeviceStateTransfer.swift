import VirtioCore
import VirtioSystem
import VhostUser

/// Why a device state was not saved or loaded (Spec/restart.md §4).
public enum DeviceStateError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The state does not start with the format's magic and version this device reads.
    case unknownFormat
    /// The state ends before a field, or has bytes after its last one.
    case wrongLength
    /// A field has a value the device cannot take (`what` names it).
    case invalidValue(String)
    /// The pipe failed: the peer did not send or take it in time, sent too much, or hung up.
    case transfer(String)
    /// A device without internal state got a non-empty one.
    case unexpectedState(byteCount: Int)

    public var description: String {
        switch self {
        case .unknownFormat: return "unknown state format or version"
        case .wrongLength: return "state of the wrong length"
        case .invalidValue(let what): return "invalid value: \(what)"
        case .transfer(let why): return "transfer failed: \(why)"
        case .unexpectedState(let n): return "\(n) bytes of state for a device that keeps none"
        }
    }
}

extension VirtioDevice {
    /// No internal state: the empty state.
    public func saveState() throws -> [UInt8] { [] }

    /// No internal state: only the empty state loads (GHT-DST-04).
    public func loadState(_ state: [UInt8]) throws {
        guard state.isEmpty else { throw DeviceStateError.unexpectedState(byteCount: state.count) }
    }
}

/// One SET_DEVICE_STATE_FD transfer: a thread of its own moves the bytes through the
/// front-end's pipe, bounded in time and size, so that the session thread answers at once and
/// a front-end that never reads or never closes holds nothing (GHT-DST-05, GHT-DST-06).
final class DeviceStateTransfer: @unchecked Sendable {
    let direction: VhostUserDeviceStateTransfer.Direction
    private let thread: WorkerThread
    private let outcome: Outcome

    /// What the transfer thread reports, read once it ended.
    private final class Outcome: Sendable {
        let result = Locked<Result<[UInt8], DeviceStateError>?>(nil)
    }

    /// Writes `state` into `fd` (save), then closes it: the end of the data.
    static func save(_ state: [UInt8], into fd: FileDescriptor, timeoutMilliseconds: Int32,
                     start: (String, @escaping @Sendable () -> Void) throws(SystemError) -> WorkerThread) throws(SystemError) -> DeviceStateTransfer {
        let outcome = Outcome()
        let thread = try start("virtio-state-save") {
            FileDescriptor.blockBrokenPipeSignalOnThisThread()
            let result: Result<[UInt8], DeviceStateError>
            do {
                try fd.writeAll(state, timeoutMilliseconds: timeoutMilliseconds)
                result = .success([])
            } catch {
                result = .failure(.transfer("\(error)"))
            }
            fd.close()
            outcome.result.withLock { $0 = result }
        }
        return DeviceStateTransfer(direction: .save, thread: thread, outcome: outcome)
    }

    /// Reads `fd` to its end (load), at most `limit` bytes.
    static func load(from fd: FileDescriptor, limit: Int, timeoutMilliseconds: Int32,
                     start: (String, @escaping @Sendable () -> Void) throws(SystemError) -> WorkerThread) throws(SystemError) -> DeviceStateTransfer {
        let outcome = Outcome()
        let thread = try start("virtio-state-load") {
            let result: Result<[UInt8], DeviceStateError>
            do {
                result = .success(try fd.readToEnd(limit: limit, timeoutMilliseconds: timeoutMilliseconds))
            } catch {
                result = .failure(.transfer("\(error)"))
            }
            fd.close()
            outcome.result.withLock { $0 = result }
        }
        return DeviceStateTransfer(direction: .load, thread: thread, outcome: outcome)
    }

    private init(direction: VhostUserDeviceStateTransfer.Direction, thread: WorkerThread,
                 outcome: Outcome) {
        self.direction = direction
        self.thread = thread
        self.outcome = outcome
    }

    /// Waits for the transfer (bounded by its timeout) and returns what it moved: the bytes
    /// read (load) or nothing (save).
    func finish() -> Result<[UInt8], DeviceStateError> {
        thread.join()
        return outcome.result.withLock { $0 } ?? .failure(.transfer("no outcome"))
    }
}
