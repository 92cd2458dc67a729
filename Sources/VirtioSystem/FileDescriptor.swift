#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// An owned file descriptor, closed exactly once.
///
/// The descriptor is closed by ``close()`` or, failing that, when the object is deallocated.
/// `close()` is idempotent and safe to race: the number is swapped out atomically, so only one
/// caller ever passes it to `close(2)`. Every descriptor this module creates has `FD_CLOEXEC`
/// set from the start (`O_CLOEXEC`, `SOCK_CLOEXEC`, `MSG_CMSG_CLOEXEC`, `F_DUPFD_CLOEXEC`...),
/// so none leaks into a spawned process unless it is explicitly mapped
/// (see ``ChildProcess/spawn(path:arguments:environment:fileDescriptors:)``).
///
/// Closing a descriptor that another thread is still using is a bug (the number may be reused
/// at once); close only when no other thread uses ``rawValue``.
public final class FileDescriptor: Sendable, CustomStringConvertible {
    private let storage: Atomic<Int32>

    /// Takes ownership of `rawValue`, which must be an open descriptor that nothing else will
    /// close.
    public init(adopting rawValue: Int32) {
        precondition(rawValue >= 0, "not a file descriptor: \(rawValue)")
        storage = Atomic(rawValue)
    }

    deinit { close() }

    /// The descriptor number, or -1 once closed (every call on it then fails with `EBADF`).
    public var rawValue: Int32 { storage.load(ordering: .acquiring) }

    /// Whether ``close()`` has not been called yet.
    public var isOpen: Bool { rawValue >= 0 }

    /// Closes the descriptor; later calls do nothing.
    ///
    /// The corresponding C function is `close`. It is not retried on `EINTR`: Linux releases
    /// the descriptor even then.
    public func close() {
        let old = storage.exchange(-1, ordering: .acquiringAndReleasing)
        if old >= 0 { closeDescriptor(old) }
    }

    /// A new descriptor for the same open file description, with `FD_CLOEXEC` set.
    ///
    /// The corresponding C call is `fcntl(fd, F_DUPFD_CLOEXEC, 0)`. The two descriptors share
    /// the file offset and status flags (such as `O_NONBLOCK`) but are closed independently.
    public func duplicate() throws(SystemError) -> FileDescriptor {
        try duplicate(atLeast: 0)
    }

    /// ``duplicate()`` onto the lowest free number not below `minimum`.
    package func duplicate(atLeast minimum: Int32) throws(SystemError) -> FileDescriptor {
        let fd = rawValue
        return FileDescriptor(adopting: try valueOrErrno("fcntl(F_DUPFD_CLOEXEC)") { fcntl(fd, F_DUPFD_CLOEXEC, minimum) })
    }

    /// Sets the file's size (`ftruncate`): what a peer does to shrink memory it shared.
    public func truncate(to size: Int) throws(SystemError) {
        let fd = rawValue
        try nothingOrErrno("ftruncate") { ftruncate(fd, off_t(size)) }
    }

    /// Writes `bytes` at `offset` of the file (`pwrite`), without moving the file offset;
    /// returns how many were written (a short count at the end of a size-sealed file).
    @discardableResult
    public func write(_ bytes: [UInt8], at offset: Int) throws(SystemError) -> Int {
        try valueOrErrno("pwrite") { bytes.withUnsafeBytes { pwrite(rawValue, $0.baseAddress, $0.count, off_t(offset)) } }
    }

    /// Sets `O_NONBLOCK` on the open file description (shared with every duplicate, including
    /// one held by another process that received it over `SCM_RIGHTS`).
    package func setNonBlocking() throws(SystemError) {
        let fd = rawValue
        let flags = try valueOrErrno("fcntl(F_GETFL)") { fcntl(fd, F_GETFL) }
        if flags & O_NONBLOCK != 0 { return }
        try nothingOrErrno("fcntl(F_SETFL)") { fcntl(fd, F_SETFL, flags | O_NONBLOCK) }
    }

    /// `FileDescriptor(7)`, or `FileDescriptor(closed)`.
    public var description: String {
        let fd = rawValue
        return fd >= 0 ? "FileDescriptor(\(fd))" : "FileDescriptor(closed)"
    }
}
