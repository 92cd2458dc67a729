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

/// What descriptor `fd` refers to, as a string that two descriptors share exactly when they
/// refer to the same open file: the `/proc/self/fd` link (`/memfd:name (deleted)`, `socket:[inode]`, a
/// path…), and for an eventfd, whose links all read `anon_inode:[eventfd]`, its `eventfd-id`
/// from `/proc/self/fdinfo`. `nil` when `fd` is not open.
///
/// Meant for leak checks that must not be disturbed by other threads: count the descriptors
/// that refer to *your* objects, before and after (``openFileIdentities()``).
public func fileIdentity(of fd: Int32) -> String? {
    var buffer = [CChar](repeating: 0, count: 256)
    let n = readlink("/proc/self/fd/\(fd)", &buffer, buffer.count - 1)
    guard n > 0 else { return nil }
    let link = String(decoding: buffer.prefix(n).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    guard link == "anon_inode:[eventfd]" else { return link }
    let info = open("/proc/self/fdinfo/\(fd)", O_RDONLY | O_CLOEXEC)
    guard info >= 0 else { return link }
    defer { closeDescriptor(info) }
    var text = [UInt8](repeating: 0, count: 512)
    let length = read(info, &text, text.count)
    guard length > 0 else { return link }
    let id = String(decoding: text.prefix(length), as: UTF8.self).split(separator: "\n").first { $0.hasPrefix("eventfd-id:") }
    return id.map { link + "#" + $0.dropFirst("eventfd-id:".count).trimmingCharacters() } ?? link
}

/// The identities (``fileIdentity(of:)``) of every descriptor this process has open.
public func openFileIdentities() throws(SystemError) -> [String] {
    let directory = OpaquePointer(try pointerOrErrno("opendir(/proc/self/fd)", failure: nil) {
        UnsafeMutableRawPointer(opendir("/proc/self/fd"))
    })
    defer { closedir(directory) }
    let own = dirfd(directory)
    var identities: [String] = []
    while let entry = readdir(directory) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        guard let fd = Int32(name), fd != own, let identity = fileIdentity(of: fd) else { continue }
        identities.append(identity)
    }
    return identities
}

extension Substring {
    fileprivate func trimmingCharacters() -> String { String(self.drop { $0 == " " || $0 == "\t" }) }
}
