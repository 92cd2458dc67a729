#if canImport(Glibc)
import Glibc
#endif

// Waits on a peer that are bounded in time (DESIGN §3: "no wait on a peer is unbounded"). A
// peer that stops reading must not hold a sender forever, and one that trickles bytes must not
// hold a receiver forever: these helpers take a deadline for a whole message, not for one call.

extension UnixSocket {
    /// Sends all of `bytes` (with `fds` on the first byte) before `timeoutMilliseconds` pass.
    ///
    /// The corresponding C calls are `sendmsg` with `MSG_DONTWAIT | MSG_NOSIGNAL` and, while the
    /// peer's buffer is full, `poll` with `POLLOUT` for what is left of the deadline. A timeout
    /// of 0 never waits (the message goes out at once or the call fails); a negative one waits
    /// forever.
    ///
    /// - Throws: `SystemError` with `ETIMEDOUT` once the deadline passes; part of the message may
    ///   have gone out, so the stream is no longer framed and the caller closes the connection.
    ///   Other errors as ``send(_:fds:)-(UnsafeRawBufferPointer,_)``.
    public func send(_ bytes: UnsafeRawBufferPointer, fds: [Int32] = [], timeoutMilliseconds: Int32) throws(SystemError) {
        precondition(fds.isEmpty || !bytes.isEmpty, "descriptors need at least one byte to travel with")
        guard let base = bytes.baseAddress else { return }
        let timeout = Timeout(milliseconds: timeoutMilliseconds)
        var sent = 0
        var pending = fds
        while sent < bytes.count {
            let rest = UnsafeRawBufferPointer(start: base + sent, count: bytes.count - sent)
            do throws(SystemError) {
                let raw = fd.rawValue
                sent += try withRightsControl(pending) { (control) throws(SystemError) in
                    try sendOnce(raw, rest, control: control, flags: Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT))
                }
                pending = []
            } catch where error.isWouldBlock {
                guard try waitWritable(timeout) else { throw SystemError(errno: ETIMEDOUT, operation: "sendmsg") }
            }
        }
    }

    /// ``send(_:fds:timeoutMilliseconds:)-(UnsafeRawBufferPointer,_,_)`` for an array of bytes.
    public func send(_ bytes: [UInt8], fds: [Int32] = [], timeoutMilliseconds: Int32) throws(SystemError) {
        let result = bytes.withUnsafeBytes { buffer in
            Result { () throws(SystemError) in try send(buffer, fds: fds, timeoutMilliseconds: timeoutMilliseconds) }
        }
        try result.get()
    }

    /// Waits until a receive would not block (data, end of stream or an error is pending).
    ///
    /// The corresponding C call is `poll` with `POLLIN`.
    /// - Parameter timeoutMilliseconds: 0 only checks, a negative value waits forever.
    /// - Returns: Whether the socket is ready before the timeout.
    public func waitReadable(timeoutMilliseconds: Int32) throws(SystemError) -> Bool {
        try waitReady(events: Int16(POLLIN), Timeout(milliseconds: timeoutMilliseconds))
    }

    private func waitWritable(_ timeout: Timeout) throws(SystemError) -> Bool {
        try waitReady(events: Int16(POLLOUT), timeout)
    }

    /// `poll` for `events`; a hung-up or failed socket counts as ready (the next call reports it).
    private func waitReady(events: Int16, _ timeout: Timeout) throws(SystemError) -> Bool {
        var entry = pollfd(fd: fd.rawValue, events: events, revents: 0)
        return try valueOrErrno("poll") { poll(&entry, 1, timeout.remainingMilliseconds()) } > 0
    }
}
