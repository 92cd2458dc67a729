#if canImport(Glibc)
import Glibc
#endif

extension UnsafeRawBufferPointer {
    /// Whether `other` holds exactly these bytes: the C library's `memcmp`, which no loop
    /// written here matches in a debug build (the workloads check every reply with it). Not a
    /// system call; here because this module is the one that imports the C library.
    public func hasSameBytes(as other: UnsafeRawBufferPointer) -> Bool {
        guard count == other.count else { return false }
        guard count > 0 else { return true }
        return memcmp(baseAddress!, other.baseAddress!, count) == 0
    }
}
