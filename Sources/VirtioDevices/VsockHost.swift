import VirtioCore
import VirtioTransport
import VirtioSystem

/// The host side of virtio-vsock devices: unix sockets in the layout of Firecracker's "hybrid
/// vsock" (also rust-vmm's vhost-device-vsock), and the thread that watches them.
///
/// - A guest connecting to the host (CID 2) on port P reaches the unix socket `PATH_P`, where
///   a host program listens.
/// - A host program reaches port P of the guest by connecting to `PATH` and writing
///   `CONNECT P\n`; once the guest accepts, it reads `OK <host port>\n` and the stream is
///   the connection. A refused or malformed attempt is closed without an answer.
///
/// One host serves the devices of one process; host-initiated connections go to the device
/// attached last (one guest per socket path, as with Firecracker). Its thread waits on the
/// listener, on the `CONNECT` lines being read and on every connection's host socket, and
/// hands readiness to the device, which reads and writes the sockets on its queue workers.
public final class VsockHost: Sendable {
    /// The socket host programs connect to; guests' connections go to `socketPath_PORT`.
    public let socketPath: String
    /// `CONNECT` lines being read at once; more connections wait in the listener's backlog.
    public static let maxHandshakes = 64
    let poller: Poller
    private let listener: UnixSocket
    private let wake: Doorbell
    private let shared = Locked(Shared())
    private let thread = Locked<WorkerThread?>(nil)

    private struct Shared {
        weak var device: VsockDevice?
        var nextToken: UInt64 = firstConnectionToken
        var handshakes: [UInt64: Handshake] = [:]
        var stopping = false
    }

    private struct Handshake {
        let socket: UnixSocket
        var line: [UInt8] = []
    }

    static let wakeToken: UInt64 = 0
    static let listenerToken: UInt64 = 1
    static let firstConnectionToken: UInt64 = 16
    static let tickMilliseconds: Int32 = 100

    /// Listens at `socketPath` and starts the thread.
    ///
    /// - Throws: ``UnixSocketError`` when the path cannot be listened on, `SystemError` when
    ///   the poller or the thread cannot be made.
    public init(socketPath: String) throws {
        self.socketPath = socketPath
        listener = try UnixSocket.listen(path: socketPath, backlog: 128)
        poller = try Poller()
        wake = try Doorbell()
        try poller.add(wake.fd, token: Self.wakeToken)
        try poller.add(listener.fd, token: Self.listenerToken)
        let started = try WorkerThread.start(name: "vsock-host") { [self] in run() }
        thread.withLock { $0 = started }
    }

    /// Stops the thread (which holds the host until then), closes the listener (removing its file) and the connections being
    /// set up; the devices' connections stay theirs.
    public func stop() {
        shared.withLock { $0.stopping = true }
        try? wake.signal()
        thread.withLock { t in
            t?.join()
            t = nil
        }
        listener.close()
        let pending = shared.withLock { s in
            defer { s.handshakes = [:] }
            return s.handshakes.values.map(\.socket)
        }
        for socket in pending { socket.close() }
    }

    /// The unix socket a guest's connection to host port `port` is bridged to.
    public func path(forPort port: UInt32) -> String { "\(socketPath)_\(port)" }

    /// Makes `device` the one host-initiated connections go to.
    func attach(_ device: VsockDevice) { shared.withLock { $0.device = device } }

    func detach(_ device: VsockDevice) { shared.withLock { if $0.device === device { $0.device = nil } } }

    /// A token for a new connection's host socket.
    func newToken() -> UInt64 {
        shared.withLock { s in
            defer { s.nextToken += 1 }
            return s.nextToken
        }
    }

    private func run() {
        var events: [PollEvent] = []
        var lastExpiry = ContinuousClock.now
        while !shared.withLock({ $0.stopping }) {
            // A few times a second the device gives up requests its guest left unanswered.
            _ = try? poller.wait(timeoutMilliseconds: Self.tickMilliseconds, into: &events)
            if ContinuousClock.now - lastExpiry >= .milliseconds(Self.tickMilliseconds) {
                lastExpiry = .now
                shared.withLock { $0.device }?.expireRequests()
            }
            for event in events {
                switch event.token {
                case Self.wakeToken: _ = try? wake.drain()
                case Self.listenerToken: accept()
                default:
                    if !handshake(event) { shared.withLock { $0.device }?.hostEvent(event) }
                }
            }
        }
    }

    private func accept() {
        guard let socket = try? listener.accept() else { return }
        let token = newToken()
        let admitted = shared.withLock { s -> Bool in
            guard s.handshakes.count < Self.maxHandshakes else { return false }
            s.handshakes[token] = Handshake(socket: socket)
            return true
        }
        guard admitted, (try? poller.add(socket.fd, token: token, interest: .readable)) != nil else {
            shared.withLock { _ = $0.handshakes.removeValue(forKey: token) }
            socket.close()
            return
        }
    }

    /// Reads a `CONNECT` line; false when `event` is not a handshake's.
    private func handshake(_ event: PollEvent) -> Bool {
        guard var h = shared.withLock({ $0.handshakes[event.token] }) else { return false }
        var done = false, port: UInt32?
        var byte: UInt8 = 0
        // Byte by byte: nothing after the newline may be consumed, it is the stream's.
        while !done {
            let received: Int? = withUnsafeMutableBytes(of: &byte) { raw in
                do { return try h.socket.receiveAvailable(into: raw) } catch { return 0 }
            }
            guard let n = received else { break }
            if n == 0 { done = true; break }
            if byte == UInt8(ascii: "\n") {
                port = Self.parseConnect(h.line)
                done = true
            } else if h.line.count < 32 {
                h.line.append(byte)
            } else {
                done = true
            }
        }
        shared.withLock { s in
            if done { s.handshakes[event.token] = nil } else { s.handshakes[event.token] = h }
        }
        guard done else { return true }
        try? poller.remove(h.socket.fd)
        if let port, let device = shared.withLock({ $0.device }), device.connectFromHost(h.socket, guestPort: port, token: event.token) {
            return true
        }
        h.socket.close()
        return true
    }

    /// The port of `CONNECT <port>` (Firecracker's syntax), nil for anything else.
    static func parseConnect(_ line: [UInt8]) -> UInt32? {
        var text = String(decoding: line, as: UTF8.self)
        if text.hasSuffix("\r") { text.removeLast() }
        guard text.hasPrefix("CONNECT ") else { return nil }
        return UInt32(text.dropFirst(8))
    }
}
