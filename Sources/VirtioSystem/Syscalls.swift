#if canImport(Glibc)
import Glibc
#endif

// The syscall seam. Every OS call in the System layer goes through one of these helpers:
// they are the only place that reads `errno`, the only place that builds a `SystemError`, and
// the only place that retries EINTR. Each `body` is re-evaluated on a retry, so a call with a
// timeout recomputes what is left of it (see `Timeout`).

/// Calls `body` until it does not fail with `EINTR` and returns its result; `-1` becomes a
/// ``SystemError`` naming `operation`.
@inline(__always)
package func valueOrErrno<I: FixedWidthInteger>(
    _ operation: StaticString, _ body: () -> I
) throws(SystemError) -> I {
    while true {
        let result = body()
        if result != -1 { return result }
        let code = errno
        if code != EINTR { throw SystemError(errno: code, operation: "\(operation)") }
    }
}

/// ``valueOrErrno(_:_:)`` for calls whose only successful result is 0.
@inline(__always)
package func nothingOrErrno<I: FixedWidthInteger>(
    _ operation: StaticString, _ body: () -> I
) throws(SystemError) {
    _ = try valueOrErrno(operation, body)
}

/// For calls that return a pointer and signal failure with `failure` (`MAP_FAILED` for `mmap`,
/// `nil` for `opendir`) and `errno`.
@inline(__always)
package func pointerOrErrno(
    _ operation: StaticString, failure: UnsafeMutableRawPointer?, _ body: () -> UnsafeMutableRawPointer?
) throws(SystemError) -> UnsafeMutableRawPointer {
    while true {
        let result = body()
        if let result, result != failure { return result }
        let code = errno
        if code != EINTR { throw SystemError(errno: code, operation: "\(operation)") }
    }
}

/// For the `posix_spawn` family, which return the error number instead of setting `errno`.
@inline(__always)
package func nothingOrErrorNumber(_ operation: StaticString, _ body: () -> Int32) throws(SystemError) {
    while true {
        let code = body()
        if code == 0 { return }
        if code != EINTR { throw SystemError(errno: code, operation: "\(operation)") }
    }
}

/// Closes `fd`, never retrying: on Linux the descriptor is released even when `close` reports
/// `EINTR`, and a retry could close a number another thread has just been given. Errors are
/// dropped because the descriptor is gone either way and none of ours (memfd, eventfd, epoll,
/// sockets, pidfd) has deferred write errors to report.
@inline(__always)
package func closeDescriptor(_ fd: Int32) {
    _ = Glibc.close(fd)
}

/// For results the kernel reports in a completion instead of through `errno` (an io_uring
/// CQE's `res`: the operation's return value, or `-errno`).
@inline(__always)
package func completionOrErrno(_ operation: StaticString, _ result: Int32) throws(SystemError) -> Int {
    if result >= 0 { return Int(result) }
    throw SystemError(errno: -result, operation: "\(operation)")
}
