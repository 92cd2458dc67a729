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
    /// The truncation guard's slot for a mapping of a peer's file (GHT-LIFE-03), or -1.
    private let guardSlot: Int32

    /// The descriptor of the underlying file; closed by ``unmap()``.
    public let fd: FileDescriptor
    /// The number of bytes mapped (exactly the requested size).
    public let size: Int
    /// The offset in the file at which the window starts.
    public let offset: Int

    /// The system page size: `sysconf(_SC_PAGESIZE)`.
    public static let pageSize: Int = sysconf(Int32(_SC_PAGESIZE))

    private init(fd: FileDescriptor, base: UnsafeMutableRawPointer, size: Int, offset: Int, guarded: Bool = false) {
        self.fd = fd
        self.base = base
        self.size = size
        self.offset = offset
        mapped = Atomic(true)
        guardSlot = guarded ? CVirtioShim_guard_register(base, size) : -1
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

    /// Whether the peer shrank the file under this mapping and an access met the lost pages
    /// (GHT-LIFE-03): those pages now read as zeros, privately; nothing in the region can be
    /// trusted and its user must stop using it. Only mappings of a peer's file are guarded.
    public var isPoisoned: Bool { guardSlot >= 0 && CVirtioShim_guard_is_poisoned(guardSlot) != 0 }

    /// Whether the truncation guard covers this mapping (a peer's file, and the guard's table
    /// had room: ``TruncationGuard/capacity``).
    public var isGuarded: Bool { guardSlot >= 0 }

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

    /// Creates an anonymous shared file of `size` bytes that is not sealed: its size can
    /// change under a peer's mapping. What a front-end that does not seal its memory (DPDK's
    /// virtio-user, UML) sends; for tests of a peer that truncates its memory (GHT-LIFE-03).
    public static func createUnsealed(name: String, size: Int) throws(SharedMemoryError) -> SharedMemory {
        guard size > 0 else { throw .invalidSize(size) }
        do {
            let fd = FileDescriptor(adopting: try valueOrErrno("memfd_create") { CVirtioShim_memfd_create_unsealed(name) })
            let raw = fd.rawValue
            try nothingOrErrno("ftruncate") { ftruncate(raw, off_t(size)) }
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
    /// is left open. The mapping is registered with the truncation guard (GHT-LIFE-03): a
    /// peer that shrinks the file later poisons the region (``isPoisoned``) instead of killing
    /// the process with `SIGBUS`.
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
            return SharedMemory(fd: fd, base: try mapWindow(raw, size: size, offset: offset, protection: protection), size: size, offset: offset,
                                guarded: true)
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
        // Out of the guard's table first: a later mapping at this address is not ours to guard.
        if guardSlot >= 0 { CVirtioShim_guard_unregister(guardSlot) }
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
