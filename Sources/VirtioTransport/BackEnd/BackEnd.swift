import Synchronization
import VirtioCore
import VirtioSystem

/// A vhost-user back-end: listens on a unix socket and serves one session per connection,
/// each with its own device instance (DESIGN §4).
///
/// A session that ends — the front-end closed, was killed, or broke the protocol — has its
/// queues stopped, regions unmapped, descriptors closed and device reset; the back-end keeps
/// accepting other connections.
///
/// What one peer can hold is bounded (Spec/limits.md §3): the connections served at once, the
/// time to set up and to finish a message, the reports kept of ended sessions. A thread that
/// cannot be created refuses that connection; running out of descriptors pauses the accept
/// loop instead of spinning it (Spec/hostile-peers.md §3).
public final class BackEnd: @unchecked Sendable {
    public let socketPath: String
    public let configuration: BackEndConfiguration
    private let listener: UnixSocket
    private let makeDevice: @Sendable () -> any VirtioDevice
    private let wake: Doorbell
    private let poller: Poller
    private let stopping = Atomic<Bool>(false)
    private let state: Locked<State>
    private let logger: BackEndLogger
    private var acceptThread: WorkerThread?

    private struct State {
        var nextID = 1
        /// Sessions whose thread has not been joined yet.
        var live: [Int: (session: BackEndSession, thread: WorkerThread)] = [:]
        /// Sessions that ended and wait to be joined (GHT-LIM-44: reaping costs what ended, not
        /// what ever connected).
        var ended: [Int] = []
        /// The most recent reports, oldest overwritten first.
        var reports: ReportRing
        var refusedConnections = 0
    }

    /// Listens on `socketPath`; `makeDevice` creates the device each connection is served.
    public init(socketPath: String, configuration: BackEndConfiguration = BackEndConfiguration(),
                makeDevice: @escaping @Sendable () -> any VirtioDevice) throws {
        self.socketPath = socketPath
        self.configuration = configuration
        self.makeDevice = makeDevice
        logger = BackEndLogger(configuration)
        state = Locked(State(reports: ReportRing(capacity: configuration.keptReports)))
        listener = try UnixSocket.listen(path: socketPath)
        wake = try Doorbell()
        poller = try Poller()
        try poller.add(listener.fd, token: 0)
        try poller.add(wake.fd, token: 1)
    }

    /// Accepts connections on a background thread until ``stop()``.
    public func start() {
        acceptThread = WorkerThread(name: "accept") { [self] in self.acceptLoop() }
    }

    /// Accepts connections on the calling thread until ``stop()`` (from another thread). A
    /// process that serves until SIGINT or SIGTERM calls ``serveUntilSignal(_:stop:)`` instead.
    public func run() { acceptLoop() }

    private func acceptLoop() {
        var events: [PollEvent] = []
        var pause = 0
        while !stopping.load(ordering: .acquiring) {
            // GHT-LIVE-04: out of descriptors or memory, the pending connection stays pending
            // and the listener stays readable; the loop pauses (woken early by stop() or a
            // session's end, which frees a descriptor) instead of retrying at once.
            if pause > 0 { _ = try? wake.wait(timeoutMilliseconds: Int32(pause)) }
            guard (try? poller.wait(timeoutMilliseconds: -1, into: &events)) != nil else { continue }
            for event in events where event.token == 0 {
                do {
                    let connection = try listener.accept()
                    pause = 0
                    serve(connection)
                } catch where error.isResourceExhaustion {
                    pause = min(max(pause * 2, 10), max(configuration.acceptBackoffMaxMilliseconds, 1))
                    logger(.error, .accept, "accept: \(error); pausing \(pause) ms")
                } catch {
                    continue   // the connection went away before it was accepted (ECONNABORTED)
                }
            }
            reapFinished()
        }
    }

    private func serve(_ connection: UnixSocket) {
        reapFinished()
        // GHT-LIM-40: beyond the cap, the connection is closed before anything is read. (Only
        // this thread adds sessions, so the count cannot grow between the check and the insert.)
        let admitted: Int? = state.withLock { s in
            guard s.live.count < configuration.maxConnections else {
                s.refusedConnections += 1
                return nil
            }
            defer { s.nextID += 1 }
            return s.nextID
        }
        guard let id = admitted else {
            logger(.warning, .sessionRefused, "connection refused: \(configuration.maxConnections) connections served (the limit, GHT-LIM-40)")
            connection.close()
            return
        }
        let session = BackEndSession(id: id, socket: connection, device: makeDevice(), configuration: configuration)
        let started: Bool = state.withLock { s in
            do {
                // GHT-LIM-41: no thread for the session refuses this connection, nothing else.
                // Started under the lock, so that its end is recorded after its start.
                let thread = try configuration.startThread("session\(id)") { [weak self, socketPath] in
                    // Logged by the session's thread before it serves: always before its end.
                    session.log(.info, .sessionOpened, "connected on \(socketPath)")
                    let report = session.serve()
                    self?.state.withLock { s in
                        s.ended.append(report.id)
                        s.reports.append(report)
                    }
                    try? self?.wake.signal()
                }
                s.live[id] = (session, thread)
                return true
            } catch {
                s.refusedConnections += 1
                BackEndLogger(configuration, session: id)(.warning, .sessionRefused, "connection refused: no thread (\(error), GHT-LIM-41)")
                return false
            }
        }
        if !started { connection.close() }
    }

    /// Joins the threads of sessions that ended.
    private func reapFinished() {
        // The doorbell first: a session that ends after this rings it again. Drained after
        // taking the list, it could swallow the ring of a session that ended in between, which
        // then waited for the next connection to be joined.
        _ = try? wake.drain()
        let done: [WorkerThread] = state.withLock { s in
            defer { s.ended.removeAll(keepingCapacity: true) }
            return s.ended.compactMap { s.live.removeValue(forKey: $0)?.thread }
        }
        for thread in done { thread.join() }
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

    /// Reports of the most recent sessions that ended (at most
    /// ``BackEndConfiguration/keptReports``), in the order they started. (A live session's
    /// state belongs to its threads; it is reported when it ends.)
    public var reports: [SessionReport] {
        state.withLock { $0.reports.elements }.sorted { $0.id < $1.id }
    }

    /// The number of sessions being served.
    public var liveSessionCount: Int { state.withLock { s in s.live.count - s.ended.count } }

    /// Connections closed at once: beyond ``BackEndConfiguration/maxConnections``, or with no
    /// thread to serve them.
    public var refusedConnectionCount: Int { state.withLock { $0.refusedConnections } }

    /// Entries of the back-end's bookkeeping (live sessions, ended ones not yet joined, kept
    /// reports): bounded by the connections served at once and ``BackEndConfiguration/keptReports``.
    var bookkeepingCount: Int { state.withLock { s in s.live.count + s.ended.count + s.reports.elements.count } }
}

/// The most recent session reports, in a fixed-size ring: appending costs O(1) and never grows
/// the ring past its capacity (GHT-LIM-44).
struct ReportRing {
    private var storage: [SessionReport] = []
    private var next = 0
    let capacity: Int

    init(capacity: Int) { self.capacity = max(capacity, 0) }

    mutating func append(_ report: SessionReport) {
        guard capacity > 0 else { return }
        if storage.count < capacity {
            storage.append(report)
        } else {
            storage[next] = report
            next = (next + 1) % capacity
        }
    }

    /// The reports kept, oldest first.
    var elements: [SessionReport] { Array(storage[next...] + storage[..<next]) }
}
