import Synchronization
import Testing
@testable import VirtioTransport
import VirtioCore

/// A scripted vhost-user back-end for the front-end's (driver's) rules: it answers every
/// request the way the script says, never processes a queue, and records every request it
/// received, in order, together with the kicks it saw on each queue's doorbell before that
/// request arrived. The front-end under test is built over one end of a socket pair.
final class DriverRuleDevice: @unchecked Sendable {
    /// How the scripted device answers.
    struct Script: Sendable {
        var offered: VirtioFeatures = [.version1, .accessPlatform, .eventIndex, .indirectDescriptors, .ringPacked,
                                       .vhostUserProtocolFeatures]
        var protocolFeatures: VhostUserProtocolFeatures = [.replyAck, .status, .config, .grantTable]
        var queueCount: UInt64 = 2
        /// GET_STATUS never shows FEATURES_OK (the device did not accept the features).
        var dropsFeaturesOK = false
        /// After a status-0 write, GET_STATUS shows this instead of 0 (a reset that has not finished).
        var statusAfterReset: DeviceStatus = []
        /// The first request for which this is true is refused (non-zero REPLY_ACK).
        var refuses: @Sendable (VhostUserMessage) -> Bool = { _ in false }
    }

    /// What the device saw, in order.
    enum Event: Sendable, CustomStringConvertible {
        case request(VhostUserMessage)
        /// `count` kicks on queue `queue` since the last event.
        case kick(queue: Int, count: UInt64)
        /// The request the script refused.
        case refused(VhostUserMessage)

        var description: String {
            switch self {
            case .request(let m): return "\(m)"
            case .kick(let q, let n): return "kick(q\(q) x\(n))"
            case .refused(let m): return "REFUSED \(m)"
            }
        }
    }

    private struct State {
        var events: [Event] = []
        var kicks: [Int: EventNotifier] = [:]
        var status: DeviceStatus = []
        var refused = false
    }

    let script: Script
    private let state = Mutex(State())
    private let socket: UnixSocket
    private var thread: WorkerThread?

    /// Starts the device and returns it with the socket end the front-end uses.
    static func start(_ script: Script = Script()) throws -> (DriverRuleDevice, UnixSocket) {
        let (mine, theirs) = try UnixSocket.pair()
        let device = DriverRuleDevice(script: script, socket: mine)
        device.thread = WorkerThread(name: "driver-rule-device") { [device] in device.serve() }
        return (device, theirs)
    }

    /// A front-end over a fresh scripted device, not yet initialized.
    static func frontEnd(_ script: Script = Script(), configuration: FrontEndConfiguration = .small) throws -> (FrontEnd, DriverRuleDevice) {
        let (device, socket) = try start(script)
        try socket.setReceiveTimeout(milliseconds: configuration.timeoutMilliseconds)
        return (try FrontEnd(socket: socket, configuration: configuration), device)
    }

    private init(script: Script, socket: UnixSocket) {
        self.script = script
        self.socket = socket
    }

    /// The events so far (kicks that arrived since the last request included).
    var events: [Event] {
        state.withLock { s in
            Self.collectKicks(&s)
            return s.events
        }
    }

    /// The requests so far, in order.
    var requests: [VhostUserMessage] {
        events.compactMap { if case .request(let m) = $0 { return m } else { return nil } }
    }

    /// Waits for the front-end to close its end, then returns every event.
    func finish() -> [Event] {
        thread?.join()
        return events
    }

    private static func collectKicks(_ s: inout State) {
        for (queue, kick) in s.kicks.sorted(by: { $0.key < $1.key }) {
            if (try? kick.wait(timeoutMilliseconds: 0)) == true, let n = try? kick.drain(), n > 0 {
                s.events.append(.kick(queue: queue, count: n))
            }
        }
    }

    private func serve() {
        let channel = VhostUserChannel(socket: socket)
        while let received = try? channel.receive() {
            guard let message = try? VhostUserCodec.decode(header: received.frame.header, payload: received.frame.payload,
                                                           fileDescriptorCount: received.fds.count) else { break }
            guard let reply = handle(message, fds: received.fds, needsReply: received.frame.header.needsReply) else { continue }
            guard let bytes = try? VhostUserCodec.encodeReply(reply), (try? channel.send(bytes)) != nil else { break }
        }
        socket.close()
    }

    private func handle(_ message: VhostUserMessage, fds: [FileDescriptor], needsReply: Bool) -> VhostUserReply? {
        state.withLock { s in
            Self.collectKicks(&s)
            if !s.refused && script.refuses(message) {
                s.refused = true
                s.events.append(.refused(message))
                return .ack(message.request, .failure())
            }
            s.events.append(.request(message))
            switch message {
            case .getFeatures: return .features(script.offered)
            case .getProtocolFeatures: return .protocolFeatures(script.protocolFeatures)
            case .getQueueNum: return .queueCount(script.queueCount)
            case .getMaxMemorySlots: return .memorySlotCount(8)
            case .getConfig: return .configUnavailable
            case .getVringBase(let v): return .vringBase(VhostUserVringState(index: v.index, num: 0))
            case .revokeGrants: return .ack(.revokeGrants, .success)
            case .getStatus:
                var status = s.status.isEmpty ? script.statusAfterReset : s.status
                if script.dropsFeaturesOK { status.remove(.featuresOK) }
                return .status(status)
            case .setStatus(let status):
                s.status = status
            case .setVringKick(let file):
                if let fd = fds.first, let kick = try? EventNotifier(adopting: fd.duplicate()) { s.kicks[Int(file.index)] = kick }
            default:
                break
            }
            return needsReply ? .ack(message.request, .success) : nil
        }
    }
}

extension FrontEndConfiguration {
    /// A front-end small enough to set up many times in one test.
    static var small: FrontEndConfiguration {
        var c = FrontEndConfiguration()
        c.queueSize = 16
        c.maxOutstanding = 4
        c.maxRequestSize = 4096
        c.maxReplySize = 4096
        c.timeoutMilliseconds = 2000
        return c
    }
}

extension [DriverRuleDevice.Event] {
    /// The status values written, in order.
    var statusWrites: [DeviceStatus] {
        compactMap { if case .request(.setStatus(let s)) = $0 { return s } else { return nil } }
    }

    /// Whether any request matched `predicate`.
    func contains(request predicate: (VhostUserMessage) -> Bool) -> Bool {
        contains { if case .request(let m) = $0 { return predicate(m) } else { return false } }
    }
}
