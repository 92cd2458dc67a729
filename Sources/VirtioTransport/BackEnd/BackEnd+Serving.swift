import VirtioSystem

/// How serving until a signal ended (``BackEnd/serveUntilSignal(_:stop:)``).
public struct ServeOutcome: Sendable {
    /// The signal that ended it; nil when a ``ServeStop`` did.
    public var signal: Int32?
    /// The reports of the sessions served, every back-end's in turn, each in the order the
    /// sessions started: every session that was live at the end, and the most recent
    /// ``BackEndConfiguration/keptReports`` of those that ended before.
    public var reports: [SessionReport]
}

/// Ends a serve-until-signal from any thread, as a signal would: a session limit reached,
/// an embedder's own shutdown, a test.
public final class ServeStop: Sendable {
    let doorbell: Doorbell

    public init() throws(SystemError) { doorbell = try Doorbell() }

    /// Ends the serving (any thread, any number of times).
    public func stop() { try? doorbell.signal() }
}

extension BackEnd {
    /// The signals that end serving by default.
    public static let defaultStopSignals: [Int32] = [SignalForwarder.interrupt, SignalForwarder.terminate]

    /// Serves on the calling thread until one of `signals` arrives (or `stop` is stopped), then
    /// stops accepting, ends every session and returns their reports (GHT-EMB-04): what a
    /// back-end process's `main` does.
    ///
    /// - Throws: `SystemError` when the signals cannot be forwarded (another serve-until-signal
    ///   runs in the process: `EBUSY`) or no poller can be made; nothing was started then.
    public func serveUntilSignal(_ signals: [Int32] = BackEnd.defaultStopSignals,
                                 stop: ServeStop? = nil) throws(SystemError) -> ServeOutcome {
        try Self.serveUntilSignal([self], signals: signals, stop: stop)
    }

    /// Serves several back-ends (one per socket) until one of `signals` arrives or `stop` is
    /// stopped; see ``serveUntilSignal(_:stop:)``.
    ///
    /// The handlers are installed before any back-end accepts (a signal from then on ends the
    /// serving, whatever thread it lands on, SignalForwarder) and put back before returning.
    /// `whenServing` runs once every back-end accepts: where a process says it is ready.
    public static func serveUntilSignal(_ backEnds: [BackEnd], signals: [Int32] = BackEnd.defaultStopSignals,
                                        stop: ServeStop? = nil,
                                        whenServing: () -> Void = {}) throws(SystemError) -> ServeOutcome {
        let forwarder = try SignalForwarder(signals: signals)
        defer { forwarder.restore() }
        let poller = try Poller()
        try poller.add(forwarder.fd, token: 0)
        if let stop { try poller.add(stop.doorbell.fd, token: 1) }
        let logger = backEnds.first.map { BackEndLogger($0.configuration) }
        for backEnd in backEnds { backEnd.start() }
        let sockets = backEnds.map(\.socketPath).joined(separator: ", ")
        logger?(.info, .serving, "serving \(sockets) until \(signals.map(SignalForwarder.name(of:)).joined(separator: " or "))")
        whenServing()
        var signal: Int32?
        var events: [PollEvent] = []
        wait: while true {
            do {
                try poller.wait(timeoutMilliseconds: -1, into: &events)
            } catch {
                // epoll_wait on our own descriptors fails only if the process is broken; stop
                // rather than spin.
                logger?(.error, .serving, "waiting for a signal failed: \(error); stopping")
                break wait
            }
            for event in events {
                if event.token == 0, let s = forwarder.next() {
                    signal = s
                    break wait
                }
                if event.token == 1 { break wait }
            }
        }
        logger?(.info, .serving, "stopping (\(signal.map(SignalForwarder.name(of:)) ?? "stopped")): ending \(backEnds.map(\.liveSessionCount).reduce(0, +)) session(s)")
        for backEnd in backEnds { backEnd.stop() }
        return ServeOutcome(signal: signal, reports: backEnds.flatMap(\.reports))
    }
}
