import VirtioSystem
/// How much a log record matters to an operator (GHT-EMB-05), least severe first.
public enum LogLevel: Int, Comparable, Sendable, CaseIterable, CustomStringConvertible {
    /// What the back-end does step by step (each control message): for finding a bug.
    case debug
    /// The course of things an operator follows: sessions opened and ended, queues started.
    case info
    /// Something refused or held back that the back-end survives: a connection refused, a
    /// queue configured but not started, a front-end that broke the protocol, faults.
    case warning
    /// Something broken: a queue the device or the driver broke, memory lost, the accept loop
    /// out of descriptors.
    case error

    public static func < (a: LogLevel, b: LogLevel) -> Bool { a.rawValue < b.rawValue }

    public var description: String {
        switch self {
        case .debug: return "debug"
        case .info: return "info"
        case .warning: return "warning"
        case .error: return "error"
        }
    }
}

/// What a record is about, for a sink that filters or counts events rather than reading text.
public enum LogEvent: String, Sendable, CaseIterable {
    /// A connection was accepted and its session started (GHT-EMB-06).
    case sessionOpened
    /// A connection was closed at once: too many served, or no thread (GHT-EMB-06).
    case sessionRefused
    /// A session ended, with the reason (GHT-EMB-06).
    case sessionEnded
    /// A queue started serving (GHT-EMB-07).
    case queueStarted
    /// A queue the front-end meant to start is held back, with the reason (GHT-EMB-07, GHT-VU-24).
    case queueHeldBack
    /// A queue stopped (the front-end stopped it, or its ring areas moved).
    case queueStopped
    /// A queue broke: a ring violation, a translation fault, the device gave it up (GHT-EMB-07).
    case queueBroken
    /// Translation faults and lost memory of a session (GHT-EMB-08).
    case fault
    /// A control message received, or what the back-end did about one (grant table, IOTLB).
    case control
    /// The accept loop: out of descriptors or memory, pausing.
    case accept
    /// Serving until a signal: started, the signal that ended it (GHT-EMB-04).
    case serving
}

/// One line of the back-end's log: when, how severe, about what, and the text.
public struct LogRecord: Sendable, CustomStringConvertible {
    /// Wall-clock time of the record.
    public var time: WallClockTime
    public var level: LogLevel
    public var event: LogEvent
    /// The session it concerns, if any.
    public var session: Int?
    public var message: String

    public init(time: WallClockTime = .now(), level: LogLevel, event: LogEvent, session: Int? = nil, message: String) {
        self.time = time
        self.level = level
        self.event = event
        self.session = session
        self.message = message
    }

    /// `2026-12-07T17:09:25.123Z warning session 3: queue 0 configured but held back: ...`
    public var description: String {
        "\(time) \(level) " + (session.map { "session \($0): " } ?? "") + message
    }
}

/// Where log records go (GHT-EMB-05): an embedder's logger, a file, a test's collector.
///
/// ``write(_:)`` is called on the thread that logs (the accept thread, a session thread, a
/// queue worker) and may be called from several at once; it should not block for long, since
/// the thread waits for it. Records below ``BackEndConfiguration/logLevel`` never reach it.
public protocol LogSink: Sendable {
    func write(_ record: LogRecord)
}
