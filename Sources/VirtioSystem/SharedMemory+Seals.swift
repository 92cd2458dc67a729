#if canImport(Glibc)
import Glibc
#endif
import CVirtioShim

/// The seals on a memfd (`fcntl(F_GET_SEALS)`), as the kernel enforces them on every holder of
/// the file, whatever its descriptor's mode.
public struct SharedMemorySeals: OptionSet, Hashable, Sendable {
    public let rawValue: Int32
    public init(rawValue: Int32) { self.rawValue = rawValue }

    /// `F_SEAL_SEAL`: no seal can be added any more.
    public static let seal = SharedMemorySeals(rawValue: CVIRTIOSHIM_SEAL_SEAL)
    /// `F_SEAL_SHRINK`: the file cannot be truncated.
    public static let shrink = SharedMemorySeals(rawValue: CVIRTIOSHIM_SEAL_SHRINK)
    /// `F_SEAL_GROW`: the file cannot grow.
    public static let grow = SharedMemorySeals(rawValue: CVIRTIOSHIM_SEAL_GROW)
    /// `F_SEAL_WRITE`: nothing can write the file.
    public static let write = SharedMemorySeals(rawValue: CVIRTIOSHIM_SEAL_WRITE)
    /// `F_SEAL_FUTURE_WRITE` (Linux 5.1): mappings made before the seal keep their access; no
    /// new shared writable mapping, `write()` or hole punch is allowed (`EPERM`).
    public static let futureWrite = SharedMemorySeals(rawValue: CVIRTIOSHIM_SEAL_FUTURE_WRITE)
}

extension SharedMemory {
    /// Creates a memfd of `size` bytes that this process maps read-write and every other
    /// process can map only read-only: the file is sized, sealed against shrinking and
    /// growing, mapped `MAP_SHARED` read-write, and then sealed with `F_SEAL_FUTURE_WRITE` and
    /// `F_SEAL_SEAL` (Spec/hostile-peers.md GHT-HBE-03).
    ///
    /// Whoever receives the descriptor (a back-end over `SCM_RIGHTS`, or through
    /// `/proc/<pid>/fd`) gets `EPERM` from `mmap(PROT_WRITE, MAP_SHARED)`, `write()` and
    /// `fallocate()`: the seal is on the file, not on a descriptor. Only this mapping writes it.
    ///
    /// - Throws: ``SharedMemoryError/invalidSize(_:)``, or ``SharedMemoryError/system(_:)``
    ///   (`EINVAL` from a kernel older than 5.1).
    public static func createWritableOnlyHere(name: String, size: Int) throws(SharedMemoryError) -> SharedMemory {
        guard size > 0 else { throw .invalidSize(size) }
        let fd: FileDescriptor
        do {
            fd = FileDescriptor(adopting: try valueOrErrno("memfd_create") { CVirtioShim_memfd_create_sealable(name) })
            let raw = fd.rawValue
            try nothingOrErrno("ftruncate") { ftruncate(raw, off_t(size)) }
            try nothingOrErrno("fcntl(F_ADD_SEALS)") { CVirtioShim_seal_size_only(raw) }
        } catch {
            throw .system(error)
        }
        let memory = try map(fd: fd, size: size, requiringSealedSize: true)
        do {
            try nothingOrErrno("fcntl(F_ADD_SEALS)") { CVirtioShim_seal_future_write(fd.rawValue) }
        } catch {
            throw .system(error)
        }
        return memory
    }

    /// Maps a peer's window as ``map(fd:size:offset:requiringSealedSize:readOnly:)`` does,
    /// read-write if the file allows it and read-only if it refuses a shared writable mapping
    /// (`EPERM`: sealed with `F_SEAL_WRITE` or `F_SEAL_FUTURE_WRITE`; `EACCES`: a descriptor
    /// opened read-only).
    ///
    /// - Returns: the mapping, and whether it is writable. A caller must never store into a
    ///   read-only mapping (the store would raise `SIGSEGV`); the back-end's translators refuse
    ///   writes into it with a fault.
    public static func mapAllowingReadOnly(fd: FileDescriptor, size: Int, offset: Int = 0)
        throws(SharedMemoryError) -> (memory: SharedMemory, writable: Bool) {
        do {
            return (try map(fd: fd, size: size, offset: offset), true)
        } catch .system(let error) where error.operation == "mmap" && (error.errno == EPERM || error.errno == EACCES) {
            return (try map(fd: fd, size: size, offset: offset, readOnly: true), false)
        }
    }

    /// The seals on the file (`fcntl(F_GET_SEALS)`); empty for a file that cannot be sealed.
    public func seals() throws(SystemError) -> SharedMemorySeals {
        do {
            return SharedMemorySeals(rawValue: try valueOrErrno("fcntl(F_GET_SEALS)") { CVirtioShim_get_seals(fd.rawValue) })
        } catch where error.errno == EINVAL {
            return []
        }
    }
}
