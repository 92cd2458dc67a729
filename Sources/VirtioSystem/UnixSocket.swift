#if canImport(Glibc)
import Glibc
#endif
import CVirtioShim
import Synchronization

/// A Unix-domain stream socket (`AF_UNIX`, `SOCK_STREAM`): the vhost-user control channel,
/// which carries messages and, with them, descriptors (``send(_:fds:)``,
/// ``receive(into:maxFileDescriptors:)``).
///
/// Sockets are blocking and close-on-exec. A listening socket created by
/// ``listen(path:backlog:)`` removes its socket file when it is closed, provided the file at
/// the path is still the one it bound.
public final class UnixSocket: Sendable {
    /// The socket descriptor.
    public let fd: FileDescriptor
    private let binding: Binding?
    private let unbound = Atomic<Bool>(false)

    /// The socket file a listener created, identified by device and inode so that closing
    /// never removes a file someone else has since put at the same path.
    private struct Binding {
        var path: String
        var device: UInt64
        var inode: UInt64
    }

    private init(fd: FileDescriptor, binding: Binding? = nil) {
        self.fd = fd
        self.binding = binding
    }

    /// A socket over a connected stream socket descriptor received from a peer (vhost-user
    /// SET_BACKEND_REQ_FD). The socket owns the descriptor.
    public convenience init(adopting fd: FileDescriptor) { self.init(fd: fd, binding: nil) }

    deinit { removeSocketFile() }

    /// Creates a socket bound to `path` and listening on it.
    ///
    /// The corresponding C calls are `socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC)`, `bind` and
    /// `listen`. A socket file left at `path` by a listener that is gone (connecting to it is
    /// refused) is removed first; any other file, or a socket that still accepts connections,
    /// is left alone and the call fails. The liveness probe is a real connection: a live
    /// listener at the path accepts it and sees it close at once.
    ///
    /// - Throws: ``UnixSocketError/invalidPath(_:)``, ``UnixSocketError/notASocket(_:)``,
    ///   ``UnixSocketError/addressInUse(_:)``, or ``UnixSocketError/system(_:)``.
    public static func listen(path: String, backlog: Int32 = 16) throws(UnixSocketError) -> UnixSocket {
        let address = try SocketAddress(path: path)
        try removeStaleSocketFile(at: path, address: address)
        do {
            let fd = try newSocket()
            let raw = fd.rawValue
            try address.withSockaddr { (pointer, length) throws(SystemError) in
                try nothingOrErrno("bind") { bind(raw, pointer, length) }
            }
            try nothingOrErrno("listen") { Glibc.listen(raw, backlog) }
            var info = stat()
            try nothingOrErrno("lstat") { lstat(path, &info) }
            return UnixSocket(fd: fd, binding: Binding(path: path, device: UInt64(info.st_dev), inode: UInt64(info.st_ino)))
        } catch {
            throw .system(error)
        }
    }

    /// Waits for and returns the next connection to this listening socket.
    ///
    /// The corresponding C call is `accept4(fd, NULL, NULL, SOCK_CLOEXEC)`.
    public func accept() throws(SystemError) -> UnixSocket {
        let raw = fd.rawValue
        return UnixSocket(fd: FileDescriptor(adopting: try valueOrErrno("accept4") { CVirtioShim_accept_cloexec(raw) }))
    }

    /// Connects to the listening socket at `path`.
    ///
    /// The corresponding C calls are `socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC)` and
    /// `connect`. Fails with `ENOENT` if nothing is at the path and `ECONNREFUSED` if nothing
    /// listens there.
    public static func connect(path: String) throws(UnixSocketError) -> UnixSocket {
        let address = try SocketAddress(path: path)
        do {
            let fd = try newSocket()
            let raw = fd.rawValue
            try address.withSockaddr { (pointer, length) throws(SystemError) in
                try nothingOrErrno("connect") { Glibc.connect(raw, pointer, length) }
            }
            return UnixSocket(fd: fd)
        } catch {
            throw .system(error)
        }
    }

    /// Two sockets connected to each other.
    ///
    /// The corresponding C call is `socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC)`.
    public static func pair() throws(SystemError) -> (UnixSocket, UnixSocket) {
        var fds: [Int32] = [-1, -1]
        try nothingOrErrno("socketpair") {
            socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds)
        }
        return (UnixSocket(fd: FileDescriptor(adopting: fds[0])), UnixSocket(fd: FileDescriptor(adopting: fds[1])))
    }

    /// Makes a receive that waits longer than `milliseconds` fail with
    /// ``UnixSocketError/timedOut``; `nil` or 0 waits forever.
    ///
    /// The corresponding C call is `setsockopt(SOL_SOCKET, SO_RCVTIMEO)`.
    public func setReceiveTimeout(milliseconds: Int32?) throws(SystemError) {
        let total = Int(max(milliseconds ?? 0, 0))
        var value = timeval(tv_sec: total / 1000, tv_usec: (total % 1000) * 1000)
        let raw = fd.rawValue
        try nothingOrErrno("setsockopt(SO_RCVTIMEO)") {
            setsockopt(raw, SOL_SOCKET, SO_RCVTIMEO, &value, socklen_t(MemoryLayout<timeval>.size))
        }
    }

    /// Shuts down both directions: the peer's receives return 0, and a thread blocked in
    /// ``receive(into:maxFileDescriptors:)`` or ``accept()`` on this socket wakes up.
    ///
    /// The corresponding C call is `shutdown(fd, SHUT_RDWR)`.
    public func shutdown() throws(SystemError) {
        let raw = fd.rawValue
        try nothingOrErrno("shutdown") { Glibc.shutdown(raw, Int32(SHUT_RDWR)) }
    }

    /// Shuts down the sending direction only: the peer reads what was sent, then end of file;
    /// this side can still receive.
    ///
    /// The corresponding C call is `shutdown(fd, SHUT_WR)`.
    public func shutdownWriting() throws(SystemError) {
        let raw = fd.rawValue
        try nothingOrErrno("shutdown") { Glibc.shutdown(raw, Int32(SHUT_WR)) }
    }

    /// Closes the socket; a listener also removes its socket file. Later calls do nothing.
    ///
    /// The file is removed only while this socket is still open (closing ``fd`` directly
    /// leaves a stale file, which the next ``listen(path:backlog:)`` replaces) and still has
    /// the inode it was bound with.
    public func close() {
        removeSocketFile()
        fd.close()
    }

    private func removeSocketFile() {
        guard let binding, !unbound.exchange(true, ordering: .acquiringAndReleasing) else { return }
        // While our socket listens, no listen() treats its file as stale, so a file with our
        // inode at the path is ours. Once the socket is closed, the file may have been
        // replaced by one that reuses the inode number.
        guard fd.isOpen else { return }
        var info = stat()
        guard (try? nothingOrErrno("lstat", { lstat(binding.path, &info) })) != nil,
              UInt64(info.st_dev) == binding.device, UInt64(info.st_ino) == binding.inode else { return }
        _ = try? nothingOrErrno("unlink") { unlink(binding.path) }
    }

    private static func newSocket() throws(SystemError) -> FileDescriptor {
        FileDescriptor(adopting: try valueOrErrno("socket") {
            socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        })
    }

    private static func removeStaleSocketFile(at path: String, address: SocketAddress) throws(UnixSocketError) {
        var info = stat()
        do {
            try nothingOrErrno("lstat") { lstat(path, &info) }
        } catch where error.errno == ENOENT {
            return
        } catch {
            throw .system(error)
        }
        guard info.st_mode & S_IFMT == S_IFSOCK else { throw .notASocket(path) }
        do {
            let probe = try newSocket()
            let raw = probe.rawValue
            try address.withSockaddr { (pointer, length) throws(SystemError) in
                try nothingOrErrno("connect") { Glibc.connect(raw, pointer, length) }
            }
        } catch where error.errno == ECONNREFUSED {
            do {
                try nothingOrErrno("unlink") { unlink(path) }
            } catch where error.errno == ENOENT {
                return
            } catch {
                throw .system(error)
            }
            return
        } catch {
            throw .system(error)
        }
        throw .addressInUse(path)
    }
}

/// A `sockaddr_un` for a filesystem path.
package struct SocketAddress {
    private var storage = sockaddr_un()
    private let length: socklen_t

    package init(path: String) throws(UnixSocketError) {
        let bytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: storage.sun_path)
        guard !bytes.isEmpty, !bytes.contains(0), bytes.count < capacity else { throw .invalidPath(path) }
        storage.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &storage.sun_path) { $0.copyBytes(from: bytes) }
        length = socklen_t(MemoryLayout<sockaddr_un>.offset(of: \.sun_path)! + bytes.count + 1)
    }

    package func withSockaddr<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) throws(SystemError) -> R) throws(SystemError) -> R {
        var copy = storage
        return try withUnsafePointer(to: &copy) { (pointer) throws(SystemError) in
            try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { (address) throws(SystemError) in
                try body(address, length)
            }
        }
    }
}
