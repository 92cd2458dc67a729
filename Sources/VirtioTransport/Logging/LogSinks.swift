import VirtioCore
import VirtioSystem

/// The default sink: one line per record on standard error, with an ISO 8601 UTC timestamp
/// (GHT-EMB-05). Each line is one `write(2)`, so lines from several threads do not interleave.
public struct StandardErrorLogSink: LogSink {
    public init() {}

    public func write(_ record: LogRecord) {
        StandardStream.error.writeLine("\(record)")
    }
}

/// A sink that calls a closure with each record: for an embedder's own logger.
public struct ClosureLogSink: LogSink {
    private let body: @Sendable (LogRecord) -> Void

    public init(_ body: @escaping @Sendable (LogRecord) -> Void) { self.body = body }

    public func write(_ record: LogRecord) { body(record) }
}

/// A sink that keeps the records, for tests: ``records`` in the order written, at most
/// `capacity` (the oldest dropped beyond it).
public final class CollectingLogSink: LogSink {
    private let state: Locked<[LogRecord]>
    public let capacity: Int

    public init(capacity: Int = 10_000) {
        self.capacity = max(capacity, 1)
        state = Locked([])
    }

    public func write(_ record: LogRecord) {
        state.withLock { records in
            if records.count == capacity { records.removeFirst() }
            records.append(record)
        }
    }

    /// The records kept, oldest first. A copy made under the lock: an array sharing the
    /// sink's storage would be read outside it while a session thread appends.
    public var records: [LogRecord] { state.withLock { $0.map { $0 } } }

    /// The records of `event`.
    public func records(of event: LogEvent) -> [LogRecord] { state.withLock { $0.filter { $0.event == event } } }

    /// Forgets every record.
    public func removeAll() { state.withLock { $0.removeAll() } }
}

/// A configured sink and level, and the session a record is about: how the back-end logs.
struct BackEndLogger: Sendable {
    let sink: (any LogSink)?
    let level: LogLevel
    let session: Int?

    init(_ configuration: BackEndConfiguration, session: Int? = nil) {
        sink = configuration.logSink
        level = configuration.logLevel
        self.session = session
    }

    /// Whether a record at `level` is written: the message of one that is not is never built.
    func enabled(_ level: LogLevel) -> Bool { sink != nil && level >= self.level }

    func callAsFunction(_ level: LogLevel, _ event: LogEvent, _ message: @autoclosure () -> String) {
        guard let sink, level >= self.level else { return }
        sink.write(LogRecord(level: level, event: event, session: session, message: message()))
    }
}
