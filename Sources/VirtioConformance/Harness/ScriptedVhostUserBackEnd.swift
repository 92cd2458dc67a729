import VirtioCore
import VirtioTransport
import VirtioSystem
import VhostUser

/// A scripted vhost-user back-end, for testing a front-end (a driver) against the VIRTIO driver
/// rules: it answers every request the way its script says (features offered, a FEATURES_OK that
/// does not stick, a reset that has not finished, one request refused), never processes a
/// queue, and records every request it received, in order, together with the kicks it saw on
/// each queue's doorbell before that request arrived. The front-end under test talks to it over
/// the socket ``start(_:)`` returns (GHT-CNF-09).
public final class ScriptedVhostUserBackEnd: @unchecked Sendable {
    /// How the scripted device answers.
    public struct Script: Sendable {
        public init() {}
        public var offered: VirtioFeatures = [.version1, .accessPlatform, .eventIndex, .indirectDescriptors, .ringPacked,
                                       .vhostUserProtocolFeatures]
        public var protocolFeatures: VhostUserProtocolFeatures = [.replyAck, .status, .config, .grantTable]
        public var queueCount: UInt64 = 2
        /// GET_STATUS never shows FEATURES_OK (the device did not accept the features).
        public var dropsFeaturesOK = false
        /// After a status-0 write, GET_STATUS shows this instead of 0 (a reset that has not finished).
        public var statusAfterReset: DeviceStatus = []
        /// The first request for which this is true is refused (non-zero REPLY_ACK).
        public var refuses: @Sendable (VhostUserMessage) -> Bool = { _ in false }
    }

    /// What the device saw, in order.
    public enum Event: Sendable, CustomStringConvertible {
        case request(VhostUserMessage)
        /// `count` kicks on queue `queue` since the last event.
        case kick(queue: Int, count: UInt64)
        /// The request the script refused.
        case refused(VhostUserMessage)

        public var description: String {
            switch self {
            case .request(let m): return "\(m)"
            case .kick(let q, let n): return "kick(q\(q) x\(n))"
            case .refused(let m): return "REFUSED \(m)"
            }
        }
    }

    /// A file the front-end sent, kept open: what a back-end that ignores the protocol holds
    /// (every memory region's file, the grant table, the doorbells), to map and write as it likes.
    public struct ReceivedFile: Sendable {
        /// The request that carried it.
        public let request: VhostUserRequest
        /// Its position among the request's descriptors (a memory table's region index).
        public let index: Int
        public let fd: FileDescriptor
    }

    private struct State {
        var events: [Event] = []
        var files: [ReceivedFile] = []
        var kicks: [Int: Doorbell] = [:]
        var status: DeviceStatus = []
        var refused = false
    }

    public let script: Script
    private let state = Locked(State())
    private let connection: Locked<UnixSocket?>
    private var thread: WorkerThread?

    /// Starts the device and returns it with the socket end the front-end uses.
    public static func start(_ script: Script = Script()) throws -> (ScriptedVhostUserBackEnd, UnixSocket) {
        let (mine, theirs) = try UnixSocket.pair()
        let device = ScriptedVhostUserBackEnd(script: script, socket: mine)
        // Weak: the device holds its thread, so a strong capture would be a cycle that keeps both
        // alive forever; while serving, `serve` keeps the device alive itself.
        device.thread = WorkerThread(name: "scripted-back-end") { [weak device] in device?.serve() }
        return (device, theirs)
    }

    /// Listens at `path` and serves the first front-end that connects (a driver in another
    /// process, or one that only knows socket paths); the listening socket is closed once it
    /// has connected.
    public static func listen(at path: String, _ script: Script = Script()) throws -> ScriptedVhostUserBackEnd {
        let listener = try UnixSocket.listen(path: path)
        let device = ScriptedVhostUserBackEnd(script: script, socket: nil)
        device.thread = WorkerThread(name: "scripted-back-end") { [weak device] in
            defer { listener.close() }
            guard let connection = try? listener.accept(), let device else { return }
            device.connection.withLock { $0 = connection }
            device.serve()
        }
        return device
    }

    private init(script: Script, socket: UnixSocket?) {
        self.script = script
        connection = Locked(socket)
    }

    /// The events so far (kicks that arrived since the last request included).
    public var events: [Event] {
        state.withLock { s in
            Self.collectKicks(&s)
            return s.events
        }
    }

    /// Every file received so far, in order (duplicates this device owns).
    public var receivedFiles: [ReceivedFile] { state.withLock { $0.files } }

    /// The requests so far, in order.
    public var requests: [VhostUserMessage] {
        events.compactMap { if case .request(let m) = $0 { return m } else { return nil } }
    }

    /// Waits for the front-end to close its end, then returns every event.
    public func finish() -> [Event] {
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
        guard let socket = connection.withLock({ $0 }) else { return }
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
            for (k, fd) in fds.enumerated() {
                if let copy = try? fd.duplicate() { s.files.append(ReceivedFile(request: message.request, index: k, fd: copy)) }
            }
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
                if let fd = fds.first, let kick = try? Doorbell(adopting: fd.duplicate()) { s.kicks[Int(file.index)] = kick }
            default:
                break
            }
            return needsReply ? .ack(message.request, .success) : nil
        }
    }
}

extension [ScriptedVhostUserBackEnd.Event] {
    /// The status values written, in order.
    public var statusWrites: [DeviceStatus] {
        compactMap { if case .request(.setStatus(let s)) = $0 { return s } else { return nil } }
    }

    /// Whether any request matched `predicate`.
    public func contains(request predicate: (VhostUserMessage) -> Bool) -> Bool {
        contains { if case .request(let m) = $0 { return predicate(m) } else { return false } }
    }
}
