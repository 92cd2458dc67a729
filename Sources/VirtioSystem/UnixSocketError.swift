/// Why a Unix-domain socket operation failed, beyond a plain system error.
public enum UnixSocketError: Error, Hashable, Sendable {
    /// The path is empty, contains a NUL byte, or does not fit `sockaddr_un.sun_path`
    /// (107 bytes).
    case invalidPath(String)
    /// Something other than a socket exists at the path; ``UnixSocket/listen(path:backlog:)``
    /// never removes it.
    case notASocket(String)
    /// A socket at the path accepts connections: another listener owns it.
    case addressInUse(String)
    /// The peer sent more descriptors than the receive allowed, or more control data than
    /// fit (`MSG_CTRUNC`). The bytes were received (`bytesReceived` of them, in the buffer),
    /// and every descriptor that did arrive was closed.
    case controlTruncated(bytesReceived: Int)
    /// A control message other than `SCM_RIGHTS` arrived. Its descriptors, if any, were
    /// closed.
    case unexpectedControlMessage(level: Int32, type: Int32)
    /// No data arrived within the receive timeout (``UnixSocket/setReceiveTimeout(milliseconds:)``).
    case timedOut
    /// A system call failed.
    case system(SystemError)
}
