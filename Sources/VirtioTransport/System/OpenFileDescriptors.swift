#if canImport(Glibc)
import Glibc
#endif

/// The number of descriptors this process has open: the entries of `/proc/self/fd`, not
/// counting the one used to read the directory.
///
/// Meant for leak checks: take the count before and after an operation. The count covers the
/// whole process, so other threads that open descriptors meanwhile change it.
public func openFileDescriptorCount() throws(SystemError) -> Int {
    let directory = OpaquePointer(try pointerOrErrno("opendir(/proc/self/fd)", failure: nil) {
        UnsafeMutableRawPointer(opendir("/proc/self/fd"))
    })
    defer { closedir(directory) }
    var count = 0
    while let entry = readdir(directory) {
        // Skip "." and "..": every descriptor's name is a number.
        let first = withUnsafeBytes(of: entry.pointee.d_name) { $0[0] }
        if first != UInt8(ascii: ".") { count += 1 }
    }
    return count - 1
}
