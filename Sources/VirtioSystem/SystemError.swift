#if canImport(Glibc)
import Glibc
#endif

/// A system call failed: the `errno` it reported and the name of the operation.
///
/// Every OS call in this module reports failure as this one type; the conversion from `errno`
/// happens only in the syscall seam (`Syscalls.swift`), which also retries `EINTR`, so an
/// interrupted call never surfaces as an error.
public struct SystemError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The C `errno` value, for example `ENOENT`.
    public var errno: Int32
    /// The system call or libc function that failed, for example `"mmap"`.
    public var operation: String

    /// An error for `operation` failing with `errno`.
    public init(errno: Int32, operation: String) {
        self.errno = errno
        self.operation = operation
    }

    /// `"operation: message (errno N)"`, with the message from `strerror`.
    ///
    /// glibc's `strerror` returns a static string for every known code and a thread-local
    /// buffer otherwise, so this is safe to call from any thread.
    public var description: String {
        let message = strerror(errno).map { String(cString: $0) } ?? "unknown error"
        return "\(operation): \(message) (errno \(errno))"
    }

    /// Whether the call would have blocked (`EAGAIN` / `EWOULDBLOCK`): a full eventfd counter,
    /// an empty non-blocking descriptor, or an expired `SO_RCVTIMEO`.
    public var isWouldBlock: Bool { errno == EAGAIN || errno == EWOULDBLOCK }

    /// Whether a deadline passed (`ETIMEDOUT`): the bounded sends and receives of the socket
    /// layer report an expired deadline this way.
    public var isTimedOut: Bool { errno == ETIMEDOUT }

    /// Whether the peer reset the connection (`ECONNRESET`).
    public var isConnectionReset: Bool { errno == ECONNRESET }

    /// `ECONNREFUSED`: nothing listens on the socket (yet: it is bound before `listen`).
    public var isConnectionRefused: Bool { errno == ECONNREFUSED }

    /// Whether the process or the system ran out of something a new connection needs
    /// (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`): waiting can cure it, retrying at once cannot.
    public var isResourceExhaustion: Bool { [EMFILE, ENFILE, ENOBUFS, ENOMEM].contains(errno) }
}
