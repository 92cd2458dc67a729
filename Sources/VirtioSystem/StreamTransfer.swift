#if canImport(Glibc)
import Glibc
#endif

/// Why a bounded stream transfer through a descriptor (a pipe) did not complete.
public enum StreamTransferError: Error, Equatable, Sendable {
    /// The peer neither sent, took nor closed in time.
    case timedOut
    /// The peer sent more than the reader accepts.
    case tooLong(limit: Int)
    case system(SystemError)
}

extension FileDescriptor {
    /// Reads until the writer closes its end, at most `limit` bytes, waiting at most
    /// `timeoutMilliseconds` in all: a peer that never closes, or sends without end, costs a
    /// bounded time and a bounded buffer.
    ///
    /// The corresponding C calls are `poll(POLLIN)` and `read`.
    public func readToEnd(limit: Int, timeoutMilliseconds: Int32) throws(StreamTransferError) -> [UInt8] {
        let timeout = Timeout(milliseconds: timeoutMilliseconds)
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16 * 1024)
        while true {
            try waitFor(Int16(POLLIN), timeout)
            let raw = rawValue
            let n: Int
            do {
                n = try valueOrErrno("read") { chunk.withUnsafeMutableBytes { read(raw, $0.baseAddress, $0.count) } }
            } catch {
                throw .system(error)
            }
            if n == 0 { return bytes }
            guard n <= limit - bytes.count else { throw .tooLong(limit: limit) }
            bytes += chunk[..<n]
        }
    }

    /// Writes all of `bytes`, waiting at most `timeoutMilliseconds` in all for the reader to take
    /// them. A reader that closed its end is `EPIPE`: call
    /// ``blockBrokenPipeSignalOnThisThread()`` first on the writing thread, so that it is not
    /// also a `SIGPIPE`.
    ///
    /// The corresponding C calls are `poll(POLLOUT)` and `write`.
    public func writeAll(_ bytes: [UInt8], timeoutMilliseconds: Int32) throws(StreamTransferError) {
        let timeout = Timeout(milliseconds: timeoutMilliseconds)
        var done = 0
        while done < bytes.count {
            try waitFor(Int16(POLLOUT), timeout)
            let raw = rawValue
            let n: Int
            do {
                n = try valueOrErrno("write") {
                    bytes.withUnsafeBytes { Glibc.write(raw, $0.baseAddress! + done, min($0.count - done, 64 * 1024)) }
                }
            } catch {
                throw .system(error)
            }
            done += n
        }
    }

    private func waitFor(_ events: Int16, _ timeout: Timeout) throws(StreamTransferError) {
        let ready: Bool
        do { ready = try isReady(for: events, within: timeout) } catch { throw .system(error) }
        if !ready { throw .timedOut }
    }

    /// Whether the descriptor becomes ready for `events` before `timeout` runs out.
    ///
    /// The corresponding C call is `poll`.
    package func isReady(for events: Int16, within timeout: Timeout) throws(SystemError) -> Bool {
        var pollfd = Glibc.pollfd(fd: rawValue, events: events, revents: 0)
        return try valueOrErrno("poll") { poll(&pollfd, 1, timeout.remainingMilliseconds()) } > 0
    }

    /// Blocks `SIGPIPE` on the calling thread: a write into a pipe whose reader is gone fails
    /// with `EPIPE` instead of ending the process (the signal stays pending on this thread,
    /// which should be one of the transfer's own).
    ///
    /// The corresponding C call is `pthread_sigmask(SIG_BLOCK, {SIGPIPE})`.
    public static func blockBrokenPipeSignalOnThisThread() {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGPIPE)
        _ = pthread_sigmask(SIG_BLOCK, &set, nil)
    }
}
