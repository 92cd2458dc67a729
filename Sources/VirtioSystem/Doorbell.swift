#if canImport(Glibc)
import Glibc
#endif
import CVirtioShim

/// A doorbell: an eventfd used for virtqueue kicks and calls.
///
/// An eventfd holds a 64-bit counter. ``signal()`` adds 1, ``drain()`` reads the counter and
/// resets it to 0. Signals therefore coalesce: however many arrive between two drains, the
/// waiter wakes once and learns only how many there were. That is exactly what a virtqueue
/// notification needs (the receiver re-reads the ring, which is the real state), and it is why
/// a doorbell can never overflow a queue of events.
///
/// The descriptor is always non-blocking, so ``drain()`` never blocks; ``wait(timeoutMilliseconds:)``
/// (or a ``Poller``) is how a thread sleeps until a signal arrives.
public final class Doorbell: Sendable {
    /// The eventfd. Send it to the peer over ``UnixSocket/send(_:fds:)``.
    public let fd: FileDescriptor

    /// A new doorbell with its counter at 0.
    ///
    /// The corresponding C call is `eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)`.
    public init() throws(SystemError) {
        fd = FileDescriptor(adopting: try valueOrErrno("eventfd") { eventfd(0, Int32(EFD_CLOEXEC | EFD_NONBLOCK)) })
    }

    /// Wraps an eventfd received from a peer and makes it non-blocking.
    ///
    /// `O_NONBLOCK` is set with `fcntl(F_SETFL)` on the open file description, which the
    /// sender shares; a peer that relies on its copy blocking must not pass it here.
    ///
    /// - Throws: `SystemError` with `EINVAL` when `fd` is not an eventfd (GHT-LIVE-05): a pipe, a
    ///   socket or a file can hang up or never become readable, and a waiter would spin on it
    ///   or write into it with a meaning the peer chose.
    public init(adopting fd: FileDescriptor) throws(SystemError) {
        guard try Self.isEventFD(fd) else { throw SystemError(errno: EINVAL, operation: "eventfd type check") }
        try fd.setNonBlocking()
        self.fd = fd
    }

    /// Wraps `fd` without checking its type (tests that need a doorbell that misbehaves).
    package init(uncheckedAdopting fd: FileDescriptor) throws(SystemError) {
        try fd.setNonBlocking()
        self.fd = fd
    }

    /// Whether `fd` is an eventfd: its `/proc/self/fd` link reads `anon_inode:[eventfd]`.
    ///
    /// The corresponding C call is `readlink`. An eventfd has no other mark (`fstat` shows an
    /// anonymous inode with no file type).
    package static func isEventFD(_ fd: FileDescriptor) throws(SystemError) -> Bool {
        let expected = Array("anon_inode:[eventfd]".utf8)
        let path = "/proc/self/fd/\(fd.rawValue)"
        return try withUnsafeTemporaryAllocation(of: CChar.self, capacity: 64) { (buffer) throws(SystemError) in
            let n = try valueOrErrno("readlink") { readlink(path, buffer.baseAddress!, buffer.count) }
            return n == expected.count && buffer.prefix(n).elementsEqual(expected.map { CChar(bitPattern: $0) })
        }
    }

    /// Rings the doorbell: adds 1 to the counter.
    ///
    /// The corresponding C call is `write(fd, &one, 8)`. A counter already at its maximum
    /// (`EAGAIN`) is not an error: the waiter has not drained yet and will wake anyway.
    public func signal() throws(SystemError) {
        let raw = fd.rawValue
        var one: UInt64 = 1
        do {
            _ = try valueOrErrno("write(eventfd)") { write(raw, &one, MemoryLayout<UInt64>.size) }
        } catch where error.isWouldBlock {
            return
        }
    }

    /// Takes every pending signal: returns the counter and resets it to 0.
    ///
    /// The corresponding C call is `read(fd, &value, 8)`.
    /// - Returns: How many signals arrived since the last drain, or 0 if none did.
    public func drain() throws(SystemError) -> UInt64 {
        let raw = fd.rawValue
        var value: UInt64 = 0
        do {
            _ = try valueOrErrno("read(eventfd)") { read(raw, &value, MemoryLayout<UInt64>.size) }
        } catch where error.isWouldBlock {
            return 0
        }
        return value
    }

    /// Waits until a signal is pending, without taking it.
    ///
    /// The corresponding C call is `poll` with `POLLIN`.
    /// - Parameter timeoutMilliseconds: How long to wait; 0 only checks, a negative value
    ///   waits forever.
    /// - Returns: Whether a signal is pending (call ``drain()`` to take it).
    public func wait(timeoutMilliseconds: Int32) throws(SystemError) -> Bool {
        var entry = pollfd(fd: fd.rawValue, events: Int16(POLLIN), revents: 0)
        let timeout = Timeout(milliseconds: timeoutMilliseconds)
        let ready = try valueOrErrno("poll") { poll(&entry, 1, timeout.remainingMilliseconds()) }
        return ready > 0
    }

    /// Closes the eventfd (see ``FileDescriptor/close()``).
    public func close() { fd.close() }
}
