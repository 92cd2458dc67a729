/// Why a shared-memory region could not be created or mapped.
///
/// The checks run before `mmap`, on values that usually come from the peer (a vhost-user
/// memory table), so a bad request is refused with its own case rather than mapping a window
/// that faults (`SIGBUS`) on first touch.
public enum SharedMemoryError: Error, Hashable, Sendable {
    /// The size is zero or negative.
    case invalidSize(Int)
    /// The offset is negative or not a multiple of the page size (`mmap` requires both).
    case invalidOffset(Int, pageSize: Int)
    /// `offset + size` does not fit in an `Int`.
    case rangeOverflow(offset: Int, size: Int)
    /// The window `[offset, offset + size)` extends past the end of the file.
    case outOfBounds(offset: Int, size: Int, fileSize: Int)
    /// The caller required a file whose size is sealed (`F_SEAL_SHRINK`) and it is not: the
    /// peer could truncate it under the mapping and make every access past the new end fault.
    case notSealed
    /// A system call failed.
    case system(SystemError)
}
