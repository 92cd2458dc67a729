#if canImport(Glibc)
import Glibc
#endif

// Stream I/O that never waits, for a device that bridges guest connections to host sockets
// (the vsock device): its queue workers must not block on a host peer that stops reading or
// writing, so they move what the socket takes now and wait for readiness in a ``Poller``.

extension UnixSocket {
    /// Sends as many of `bytes` as the socket takes now; returns how many (0 when its buffer is
    /// full).
    ///
    /// The corresponding C call is `sendmsg` with `MSG_DONTWAIT | MSG_NOSIGNAL`: a closed peer is
    /// the error `EPIPE` (or `ECONNRESET`), never a `SIGPIPE`.
    public func sendAvailable(_ bytes: UnsafeRawBufferPointer) throws(SystemError) -> Int {
        guard !bytes.isEmpty else { return 0 }
        do {
            return try sendOnce(fd.rawValue, bytes, control: nil, flags: Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT))
        } catch where error.isWouldBlock {
            return 0
        }
    }

    /// Receives up to `buffer.count` bytes that are already there.
    ///
    /// The corresponding C call is `recv` with `MSG_DONTWAIT`.
    /// - Returns: the number of bytes, 0 at end of stream (the peer closed or shut down
    ///   writing), or `nil` when nothing is there yet.
    public func receiveAvailable(into buffer: UnsafeMutableRawBufferPointer) throws(SystemError) -> Int? {
        precondition(!buffer.isEmpty, "an empty buffer could not tell data from end of stream")
        let raw = fd.rawValue
        do {
            return try valueOrErrno("recv") { recv(raw, buffer.baseAddress, buffer.count, Int32(MSG_DONTWAIT)) }
        } catch where error.isWouldBlock {
            return nil
        }
    }
}
