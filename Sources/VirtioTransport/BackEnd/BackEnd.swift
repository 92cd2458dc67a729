import Synchronization
import VirtioCore

/// A vhost-user back-end: listens on a unix socket and serves one session per connection,
/// each with its own device instance (DESIGN §4).
///
/// A session that ends — the front-end closed, was killed, or broke the protocol — has its
/// queues stopped, regions unmapped, descriptors closed and device reset; the back-end keeps
/// accepting other connections.
public final class BackEnd: @unchecked Sendable {
    public let socketPath: String
    public let configuration: BackEndConfiguration
    private let listener: UnixSocket
    private let makeDevice: @Sendable () -> any VirtioDevice
    private let wake: EventNotifier
    private let poller: Poller
    private let stopping = Atomic<Bool>(false)
    private let state = Locked<State>(State())
    private var acceptThread: WorkerThread?

    private struct State {
        var nextID = 1
        var live: [Int: (session: BackEndSession, thread: WorkerThread)] = [:]
        var finished: [SessionReport] = []
    }

    /// Listens on `socketPath`; `makeDevice` creates the device each connection is served.
    public init(socketPath: String, configuration: BackEndConfiguration = BackEndConfiguration(),
                makeDevice: @escaping @Sendable () -> any VirtioDevice) throws {
        self.socketPath = socketPath
        self.configuration = configuration
        self.makeDevice = makeDevice
        listener = try UnixSocket.listen(path: socketPath)
        wake = try EventNotifier()
        poller = try Poller()
        try poller.add(listener.fd, token: 0)
        try poller.add(wake.fd, token: 1)
    }

    /// Accepts connections on a background thread until ``stop()``.
    public func start() {
        acceptThread = WorkerThread(name: "accept") { [self] in self.acceptLoop() }
    }

    /// Accepts connections on the calling thread until ``stop()``.
    public func run() { acceptLoop() }

    private func acceptLoop() {
        var events: [PollEvent] = []
        while !stopping.load(ordering: .acquiring) {
            guard (try? poller.wait(timeoutMilliseconds: -1, into: &events)) != nil else { continue }
            for event in events where event.token == 0 {
                guard let connection = try? listener.accept() else { continue }
                serve(connection)
            }
            reapFinished()
        }
    }

    private func serve(_ connection: UnixSocket) {
        let device = makeDevice()
        state.withLock { s in
            let id = s.nextID
            s.nextID += 1
            let session = BackEndSession(id: id, socket: connection, device: device, configuration: configuration)
            configuration.log?("session \(id): connected")
            let thread = WorkerThread(name: "session\(id)") { [weak self] in
                let report = session.serve()
                self?.state.withLock { s in s.finished.append(report) }
                try? self?.wake.signal()
            }
            s.live[id] = (session, thread)
        }
    }

    /// Joins the threads of sessions that ended.
    private func reapFinished() {
        let done: [(BackEndSession, WorkerThread)] = state.withLock { s in
            let ended = Set(s.finished.map(\.id))
            let finished = s.live.filter { ended.contains($0.key) }
            for id in finished.keys { s.live[id] = nil }
            return finished.values.map { ($0.session, $0.thread) }
        }
        for (_, thread) in done { thread.join() }
        _ = try? wake.drain()
    }

    /// Serves one front-end that is already connected (a back-end started with a connected
    /// socket, as vhost-user back-ends are with `--fd`) on the calling thread, until it
    /// disconnects or breaks the protocol; returns the session's report.
    public static func serve(connection: UnixSocket, device: any VirtioDevice,
                             configuration: BackEndConfiguration = BackEndConfiguration(), id: Int = 1) -> SessionReport {
        let session = BackEndSession(id: id, socket: connection, device: device, configuration: configuration)
        return withExtendedLifetime(session) { session.serve() }
    }

    /// Stops accepting, ends every session (closing its connection) and waits for them.
    public func stop() {
        stopping.store(true, ordering: .releasing)
        try? wake.signal()
        acceptThread?.join()
        acceptThread = nil
        let live = state.withLock { $0.live.values.map { $0 } }
        for (session, _) in live { try? session.channel.socket.shutdown() }
        for (_, thread) in live { thread.join() }
        reapFinished()
        listener.close()
    }

    /// Reports of the sessions that ended, in the order they started. (A live session's state
    /// belongs to its threads; it is reported when it ends.)
    public var reports: [SessionReport] {
        state.withLock { $0.finished }.sorted { $0.id < $1.id }
    }

    /// The number of sessions being served.
    public var liveSessionCount: Int { state.withLock { s in s.live.count - Set(s.finished.map(\.id)).intersection(s.live.keys).count } }
}
