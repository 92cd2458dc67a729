import VirtioCore
import VirtioSystem
import VirtioTransport
import VhostUser

/// The checker's front-end on one connection: its own memory (a memfd it owns, mapped as
/// guest-physical 0..<size), one split ring in it, its own kick and call eventfds, and every
/// message it sends or receives written into ``transcript`` as evidence (GHT-CHK-03).
final class CheckConnection {
    let channel: VhostUserChannel
    let memory: SharedMemory
    let ring: CheckRing
    let kick: Doorbell
    let call: Doorbell
    let timeoutMilliseconds: Int32
    private(set) var transcript: [String] = []
    /// Whether the back-end closed this connection (the runner then waits for a dying process).
    private(set) var closedByPeer = false
    var offered: VirtioFeatures = []
    var negotiated: VirtioFeatures = []
    var offeredProtocol: VhostUserProtocolFeatures = []
    var protocolFeatures: VhostUserProtocolFeatures = []
    /// Whether queue 0 runs empty in ``CheckRing/idleRing`` (a net back-end's receive queue).
    var idleReceiveQueue = false

    /// The pages of ``memory``: the ring's at 0, indirect tables at 0x3000, buffers from 0x8000.
    static let memoryPages = 128

    init(socketPath: String, timeoutMilliseconds: Int32, queueSize: Int = 32, sealed: Bool = true) throws(CheckError) {
        do {
            let socket = try Self.connect(socketPath, timeoutMilliseconds: timeoutMilliseconds)
            try socket.setReceiveTimeout(milliseconds: timeoutMilliseconds)
            channel = VhostUserChannel(socket: socket)
            let size = Self.memoryPages * 4096
            memory = sealed ? try SharedMemory.create(name: "check-memory", size: size)
                            : try SharedMemory.createUnsealed(name: "check-memory", size: size)
            kick = try Doorbell()
            call = try Doorbell()
        } catch {
            throw .setup("cannot connect to \(socketPath): \(error)")
        }
        ring = CheckRing(base: UnsafeMutableRawPointer(bitPattern: memory.range.startAddress)!, size: queueSize)
        self.timeoutMilliseconds = timeoutMilliseconds
    }

    /// Connects, trying again while the socket is not yet listening (bound before `listen`).
    static func connect(_ path: String, timeoutMilliseconds: Int32) throws -> UnixSocket {
        let deadline = Timeout(milliseconds: timeoutMilliseconds)
        while true {
            do {
                return try UnixSocket.connect(path: path)
            } catch {
                guard case .system(let s) = error, s.isConnectionRefused, deadline.remainingMilliseconds() > 0 else { throw error }
                SystemClock.sleep(milliseconds: 5)
            }
        }
    }

    /// Closes the socket, the doorbells and the memory (GHT-CHK-06).
    func close() {
        channel.socket.close()
        kick.close()
        call.close()
        memory.unmap()
    }

    func note(_ line: String) {
        if transcript.count < 80 { transcript.append(line) }
    }

    var evidence: String { transcript.joined(separator: "\n") }

    // MARK: messages

    /// Sends any request number with any payload and descriptors.
    func sendRaw(_ request: UInt32, payload: [UInt8], needReply: Bool = false, fds: [Int32] = [], label: String? = nil) throws(CheckError) {
        note("→ \(label ?? "request \(request)") payload \(payload.count) B, \(fds.count) fd\(needReply ? ", NEED_REPLY" : "")")
        do {
            try channel.send(VhostUserHeader.request(request, payloadSize: payload.count, needReply: needReply).encoded() + payload, fds: fds)
        } catch {
            closedByPeer = true
            throw .closed("sending \(label ?? "request \(request)"): \(error)")
        }
    }

    func send(_ message: VhostUserMessage, needReply: Bool = false, fds: [Int32] = []) throws(CheckError) {
        try sendRaw(message.request.rawValue, payload: message.encodedPayload(), needReply: needReply, fds: fds, label: "\(message)")
    }

    /// The next message from the back-end, within the bound.
    func receive(answering what: String) throws(CheckError) -> VhostUserChannel.Received {
        do {
            let received = try channel.receive()
            let h = received.frame.header
            note("← request \(h.request) flags 0x\(String(h.flags.rawValue, radix: 16)) payload \(received.frame.payload.count) B \(Self.hex(received.frame.payload.prefix(24))), \(received.fds.count) fd")
            for fd in received.fds { fd.close() }
            return received
        } catch {
            switch error {
            case .closed: closedByPeer = true; throw .closed("awaiting \(what)")
            case .socket(let e):
                if case .timedOut = e { throw .hang("\(what) within \(timeoutMilliseconds) ms") }
                closedByPeer = true
                throw .closed("awaiting \(what): \(error)")
            case .timedOut: throw .hang("\(what) within \(timeoutMilliseconds) ms")
            case .protocolViolation(let p): throw .violation("a malformed message awaiting \(what): \(p)")
            }
        }
    }

    /// The u64 payload of the reply to `request`, checked against vhost-user.rst's reply rules (GHT-VU-18).
    func u64Reply(to request: VhostUserRequest) throws(CheckError) -> UInt64 {
        let r = try receive(answering: "the reply to \(request)")
        let h = r.frame.header
        guard h.request == request.rawValue, h.flags.contains(.reply), h.flags.version == 1 else {
            throw .violation("GHT-VU-18: the reply to \(request) has request \(h.request), flags 0x\(String(h.flags.rawValue, radix: 16)) (REPLY and version 1 expected)\n\(evidence)")
        }
        guard r.frame.payload.count == 8 else {
            throw .violation("GHT-VU-18: the reply to \(request) carries \(r.frame.payload.count) bytes, 8 expected\n\(evidence)")
        }
        return r.frame.payload.reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
    }

    /// Sends a setter; with REPLY_ACK negotiated asks for the ack and returns it (0 success).
    @discardableResult
    func set(_ message: VhostUserMessage, fds: [Int32] = []) throws(CheckError) -> UInt64 {
        let ack = protocolFeatures.contains(.replyAck)
        try send(message, needReply: ack, fds: fds)
        return ack ? try u64Reply(to: message.request) : 0
    }

    /// A setter that must succeed.
    func require(_ message: VhostUserMessage, fds: [Int32] = []) throws(CheckError) {
        let status = try set(message, fds: fds)
        guard status == 0 else { throw .violation("\(message.request) was refused (ack \(status))\n\(evidence)") }
    }

    static func hex(_ bytes: some Collection<UInt8>) -> String {
        bytes.map { let s = String($0, radix: 16); return s.count == 1 ? "0" + s : s }.joined()
    }
}
