#if canImport(Glibc)
import Glibc
#endif
import CVirtioShim
import Synchronization

/// Turns process signals into bytes on a pipe that a poller can wait for (the self-pipe trick):
/// how a back-end serves until SIGINT or SIGTERM (GHT-EMB-04).
///
/// While it is installed, each of ``signals`` runs a handler (in C, async-signal-safe) that
/// writes the signal's number to the pipe, whatever thread the kernel delivers it to, so no
/// thread needs to block it first. ``restore()`` (or deinit) puts back the actions that were
/// there before. A signal blocked in every thread of the process is never delivered, and one
/// arriving before the install or after the restore has its usual effect.
///
/// Only one forwarder exists at a time in a process: signal actions are process-wide.
public final class SignalForwarder: @unchecked Sendable {
    /// The signals forwarded.
    public let signals: [Int32]
    private let pipe: Pipe
    private var installed: Bool
    private static let active = Mutex<Bool>(false)

    /// The descriptor that becomes readable when a signal arrives.
    public var fd: FileDescriptor { pipe.readEnd }

    /// Installs the handlers for `signals`.
    ///
    /// The corresponding C calls are `pipe2` and `sigaction`.
    ///
    /// - Throws: `SystemError` `EBUSY` while another forwarder is installed in the process;
    ///   `EINVAL` for a signal that cannot be caught (SIGKILL, SIGSTOP).
    public init(signals: [Int32]) throws(SystemError) {
        let claimed = Self.active.withLock { busy in
            if busy { return false }
            busy = true
            return true
        }
        guard claimed else { throw SystemError(errno: EBUSY, operation: "sigaction: signals are forwarded already") }
        self.signals = signals
        installed = true
        do {
            pipe = try Pipe()
            try pipe.readEnd.setNonBlocking()
            try pipe.writeEnd.setNonBlocking()
        } catch {
            Self.active.withLock { $0 = false }
            throw error
        }
        let write = pipe.writeEnd.rawValue
        for (n, signal) in signals.enumerated() {
            do {
                try nothingOrErrno("sigaction") { CVirtioShim_signal_forward(signal, write) }
            } catch {
                for s in signals.prefix(n) { _ = CVirtioShim_signal_restore(s) }
                installed = false
                Self.active.withLock { $0 = false }
                throw error
            }
        }
    }

    deinit { restore() }

    /// The next signal that arrived and was not taken yet, or nil (the call does not wait).
    public func next() -> Int32? {
        var byte: UInt8 = 0
        let fd = pipe.readEnd.rawValue
        guard let n = try? valueOrErrno("read", { read(fd, &byte, 1) }), n == 1 else { return nil }
        return Int32(byte)
    }

    /// Puts back the actions the signals had before; later calls do nothing. Call it from the
    /// thread that installed the forwarder.
    public func restore() {
        guard installed else { return }
        installed = false
        for signal in signals { _ = CVirtioShim_signal_restore(signal) }
        Self.active.withLock { $0 = false }
    }

    /// SIGINT (Ctrl-C), SIGTERM (`kill`, systemd's stop) and SIGHUP, for code that does not
    /// import the C library.
    public static let interrupt: Int32 = SIGINT
    public static let terminate: Int32 = SIGTERM
    public static let hangUp: Int32 = SIGHUP

    /// `SIGINT`, `SIGTERM`, `SIGHUP`..., or `signal N`.
    public static func name(of signal: Int32) -> String {
        switch signal {
        case SIGINT: return "SIGINT"
        case SIGTERM: return "SIGTERM"
        case SIGHUP: return "SIGHUP"
        case SIGQUIT: return "SIGQUIT"
        case SIGUSR1: return "SIGUSR1"
        case SIGUSR2: return "SIGUSR2"
        default: return "signal \(signal)"
        }
    }
}
