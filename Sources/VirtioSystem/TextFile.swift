#if canImport(Glibc)
import Glibc
#endif

/// Whole text files and directory listings, for the tools that read the package's own sources
/// (the conformance generator reads `Spec/` and `Tests/`, and writes the matrix).
///
/// Not for guest data: files here are read whole into a `String` and decoded as UTF-8
/// (invalid bytes become U+FFFD).
public enum TextFile {
    /// The contents of the file at `path`.
    public static func read(_ path: String) throws(SystemError) -> String {
        let fd = FileDescriptor(adopting: try valueOrErrno("open") { Glibc.open(path, O_RDONLY | O_CLOEXEC) })
        defer { fd.close() }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let count = try valueOrErrno("read") {
                chunk.withUnsafeMutableBytes { Glibc.read(fd.rawValue, $0.baseAddress, $0.count) }
            }
            if count == 0 { break }
            bytes.append(contentsOf: chunk[0..<count])
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Replaces the file at `path` with `text` (created with mode 0644 if it does not exist).
    public static func write(_ text: String, to path: String) throws(SystemError) {
        let fd = FileDescriptor(adopting: try valueOrErrno("open") {
            Glibc.open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        })
        defer { fd.close() }
        let bytes = Array(text.utf8)
        var written = 0
        while written < bytes.count {
            let offset = written
            written += try valueOrErrno("write") {
                bytes.withUnsafeBytes { Glibc.write(fd.rawValue, $0.baseAddress! + offset, $0.count - offset) }
            }
        }
    }

    /// Whether `path` names an existing file or directory.
    public static func exists(_ path: String) -> Bool {
        access(path, F_OK) == 0
    }

    /// The paths of the regular files under `directory` (recursively) whose names end with
    /// `suffix`, sorted, so that every reader sees the same order. Symbolic links and hidden
    /// entries are not followed (a link back up the tree would otherwise never end).
    public static func files(under directory: String, suffix: String) throws(SystemError) -> [String] {
        var found: [String] = []
        var pending = [directory]
        while let current = pending.popLast() {
            let dir = try pointerOrErrno("opendir", failure: nil) { UnsafeMutableRawPointer(opendir(current)) }
            let stream = OpaquePointer(dir)
            defer { closedir(stream) }
            while let entry = readdir(stream) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                    String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
                }
                if name == "." || name == ".." || name.hasPrefix(".") { continue }
                let path = current + "/" + name
                var info = stat()
                guard lstat(path, &info) == 0 else { continue }
                if info.st_mode & S_IFMT == S_IFDIR {
                    pending.append(path)
                } else if info.st_mode & S_IFMT == S_IFREG, name.hasSuffix(suffix) {
                    found.append(path)
                }
            }
        }
        return found.sorted()
    }
}
