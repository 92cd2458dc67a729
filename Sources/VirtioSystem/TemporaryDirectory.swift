#if canImport(Glibc)
import Glibc
#endif

/// A fresh private directory under `$TMPDIR` (or `/tmp`), for sockets and files a command or a
/// test creates and removes again with ``remove()``.
public struct TemporaryDirectory: Sendable {
    /// The directory's path.
    public let path: String

    /// Creates the directory, mode 0700, named after `prefix`.
    ///
    /// The corresponding C function is `mkdtemp`.
    public init(prefix: String = "virtio-grant") throws(SystemError) {
        let base = Environment.value("TMPDIR") ?? "/tmp"
        var template = Array("\(base)/\(prefix).XXXXXX".utf8CString)
        _ = try pointerOrErrno("mkdtemp", failure: nil) {
            template.withUnsafeMutableBufferPointer { UnsafeMutableRawPointer(mkdtemp($0.baseAddress!)) }
        }
        path = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Removes the files directly in the directory, then the directory (a best effort: what
    /// cannot be removed stays).
    public func remove() {
        guard let dir = opendir(path) else { return }
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != "." && name != ".." { unlink("\(path)/\(name)") }
        }
        closedir(dir)
        rmdir(path)
    }
}
