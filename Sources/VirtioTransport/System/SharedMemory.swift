#if canImport(Glibc)
import Glibc
#endif
import CVirtioShim
import Synchronization
import VirtioCore

/// A window of a shareable file (normally a memfd) mapped `MAP_SHARED`, read-write, together
/// with the descriptor that names it.
///
/// The creating side calls ``create(name:size:)``: a sealed memfd whose size can never change,
/// so the peer cannot shrink it under our mapping. The receiving side gets the descriptor over
/// `SCM_RIGHTS` and calls ``map(fd:size:offset:requiringSealedSize:)``, which checks the
/// window against the file before mapping it. Both sides see each other's writes at once.
///
/// The region owns its mapping and its descriptor: ``unmap()`` (or deallocation) calls
/// `munmap` and closes the descriptor, each exactly once. ``range`` must not be used after
/// that; keep the region alive for as long as any ``HostRange`` derived from it is in use.
public final class SharedMemory: @unchecked Sendable {
    // @unchecked: `base` is an immutable address; the only mutable state is `mapped`, an
    // atomic, so `unmap()` may race with deinit or itself and still unmaps once.
    private let base: UnsafeMutableRawPointer
    private let mapped: Atomic<Bool>

    /// The descriptor of the underlying file; closed by ``unmap()``.
    public let fd: FileDescriptor
    /// The number of bytes mapped (exactly the requested size).
    public let size: Int
    /// The offset in the file at which the window starts.
    public let offset: Int

    /// The system page size: `sysconf(_SC_PAGESIZE)`.
    public static let pageSize: Int = sysconf(Int32(_SC_PAGESIZE))

    private init(fd: FileDescriptor, base: UnsafeMutableRawPointer, size: Int, offset: Int) {
        self.fd = fd
        self.base = base
        self.size = size
        self.offset = offset
        mapped = Atomic(true)
    }

    deinit { unmap() }

    /// The mapped bytes. Trapping once the region is unmapped is deliberate: a range
    /// that outlived its mapping is our own bug, never the peer's.
    public var range: HostRange {
        precondition(isMapped, "SharedMemory used after unmap()")
        return HostRange(unsafeBase: base, count: size)
    }

    /// Whether ``unmap()`` has not run yet.
    public var isMapped: Bool { mapped.load(ordering: .acquiring) }

    /// Creates an anonymous shared file of `size` bytes, seals its size, and maps all of it.
    ///
    /// The corresponding C calls are `memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING)`,
    /// `ftruncate`, `fcntl(F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)` and
    /// `mmap(MAP_SHARED, PROT_READ | PROT_WRITE)`. The memory starts zeroed.
    ///
    /// - Parameters:
    ///   - name: A label shown in `/proc/<pid>/fd` and `/proc/<pid>/maps` (`memfd:<name>`);
    ///     it need not be unique and names no file.
    ///   - size: The size in bytes, greater than 0.
    /// - Throws: ``SharedMemoryError/invalidSize(_:)``, or ``SharedMemoryError/system(_:)``.
    public static func create(name: String, size: Int) throws(SharedMemoryError) -> SharedMemory {
        guard size > 0 else { throw .invalidSize(size) }
        do {
            let fd = FileDescriptor(adopting: try valueOrErrno("memfd_create") {
                CVirtioShim_memfd_create_sealable(name)
            })
            let raw = fd.rawValue
            try nothingOrErrno("ftruncate") { ftruncate(raw, off_t(size)) }
            try nothingOrErrno("fcntl(F_ADD_SEALS)") { CVirtioShim_seal_size(raw) }
            return SharedMemory(fd: fd, base: try mapWindow(raw, size: size, offset: 0), size: size, offset: 0)
        } catch {
            throw .system(error)
        }
    }

    /// Maps `size` bytes at `offset` of a descriptor received from a peer.
    ///
    /// Nothing about the request is trusted: the size must be positive, the offset
    /// page-aligned, `offset + size` must not overflow and must lie within the file's current
    /// size (`fstat`). Only that window is mapped (`mmap(MAP_SHARED, PROT_READ | PROT_WRITE)`).
    /// The region takes ownership of `fd` and closes it in ``unmap()``; if mapping fails, `fd`
    /// is left open.
    ///
    /// - Parameters:
    ///   - fd: The shared file, usually a memfd.
    ///   - size: The number of bytes to map, greater than 0; need not be page-aligned.
    ///   - offset: Where the window starts in the file; a multiple of ``pageSize``.
    ///   - requiringSealedSize: Refuse a file without `F_SEAL_SHRINK`. A peer that can
    ///     truncate the file can make our accesses fault with `SIGBUS`; require the seal
    ///     whenever the peer creates its memory with ``create(name:size:)``.
    ///   - readOnly: Map `PROT_READ` only (a file sealed with `F_SEAL_FUTURE_WRITE` refuses a
    ///     shared writable mapping; see ``mapAllowingReadOnly(fd:size:offset:)``).
    /// - Throws: The ``SharedMemoryError`` case for the first check that fails, or
    ///   ``SharedMemoryError/system(_:)``.
    public static func map(
        fd: FileDescriptor, size: Int, offset: Int = 0, requiringSealedSize: Bool = false, readOnly: Bool = false
    ) throws(SharedMemoryError) -> SharedMemory {
        guard size > 0 else { throw .invalidSize(size) }
        guard offset >= 0, offset % pageSize == 0 else { throw .invalidOffset(offset, pageSize: pageSize) }
        let (end, overflow) = offset.addingReportingOverflow(size)
        guard !overflow else { throw .rangeOverflow(offset: offset, size: size) }
        let raw = fd.rawValue
        var info = stat()
        do {
            try nothingOrErrno("fstat") { fstat(raw, &info) }
        } catch {
            throw .system(error)
        }
        guard end <= Int(info.st_size) else { throw .outOfBounds(offset: offset, size: size, fileSize: Int(info.st_size)) }
        if requiringSealedSize {
            let seals: Int32
            do {
                seals = try valueOrErrno("fcntl(F_GET_SEALS)") { CVirtioShim_get_seals(raw) }
            } catch where error.errno == EINVAL {
                seals = 0  // a file that cannot be sealed at all
            } catch {
                throw .system(error)
            }
            guard seals & CVIRTIOSHIM_SEAL_SHRINK != 0 else { throw .notSealed }
        }
        do {
            let protection = readOnly ? PROT_READ : PROT_READ | PROT_WRITE
            return SharedMemory(fd: fd, base: try mapWindow(raw, size: size, offset: offset, protection: protection), size: size, offset: offset)
        } catch {
            throw .system(error)
        }
    }

    /// Unmaps the window and closes the descriptor; later calls do nothing.
    ///
    /// The corresponding C functions are `munmap` and `close`.
    public func unmap() {
        guard mapped.exchange(false, ordering: .acquiringAndReleasing) else { return }
        let base = base
        let size = size
        // munmap fails only for arguments mmap itself returned, that is, never.
        do {
            try nothingOrErrno("munmap") { munmap(base, size) }
        } catch {
            assertionFailure("\(error)")
        }
        fd.close()
    }

    private static func mapWindow(_ fd: Int32, size: Int, offset: Int,
                                  protection: Int32 = PROT_READ | PROT_WRITE) throws(SystemError) -> UnsafeMutableRawPointer {
        try pointerOrErrno("mmap", failure: MAP_FAILED) {
            mmap(nil, size, protection, MAP_SHARED, fd, off_t(offset))
        }
    }
}
