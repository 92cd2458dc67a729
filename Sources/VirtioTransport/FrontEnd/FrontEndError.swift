import VirtioCore
import VirtioGrants
import VirtioSystem
import VhostUser

/// Why a front-end operation failed.
public enum FrontEndError: Error, Equatable, CustomStringConvertible {
    /// The back-end closed the connection or went away (killed, crashed).
    case disconnected
    /// The back-end did not answer or complete in time.
    case timedOut(String)
    /// The back-end's reply broke the protocol.
    case protocolViolation(String)
    /// Negotiation failed: a feature the front-end needs is missing, or FEATURES_OK did not stick.
    case negotiation(String)
    /// The back-end refused a request (a non-zero REPLY_ACK).
    case refused(VhostUserRequest)
    /// The device set DEVICE_NEEDS_RESET (a queue broke on the device side).
    case deviceNeedsReset(queue: Int)
    /// The front-end's own queue refused a chain or found the device's used ring malformed.
    case queue(DriverQueueError)
    /// No room in the shared memory pool or the grant table for the request.
    case exhausted(String)
    case grant(GrantTableError)
    case system(SystemError)
    case socket(UnixSocketError)
    case sharedMemory(SharedMemoryError)
    /// The back-end went away and the one found at its socket cannot take over the device
    /// without losing or repeating a request: it lacks a feature the device runs with, or
    /// in-flight tracking while requests were in flight on a device that may complete out
    /// of order (GHT-RCN-05, 06). The front-end stays disconnected.
    case cannotResume(String)

    public var description: String {
        switch self {
        case .disconnected: return "the back-end disconnected"
        case .timedOut(let what): return "timed out: \(what)"
        case .protocolViolation(let what): return "protocol violation: \(what)"
        case .negotiation(let what): return "negotiation failed: \(what)"
        case .refused(let request): return "the back-end refused \(request)"
        case .deviceNeedsReset(let q): return "the device needs a reset (queue \(q) broke)"
        case .queue(let e): return "queue: \(e)"
        case .exhausted(let what): return "exhausted: \(what)"
        case .grant(let e): return "grant table: \(e)"
        case .system(let e): return "\(e)"
        case .socket(let e): return "socket: \(e)"
        case .sharedMemory(let e): return "shared memory: \(e)"
        case .cannotResume(let why): return "cannot resume after a reconnect: \(why)"
        }
    }
}
