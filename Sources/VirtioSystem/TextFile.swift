#if canImport(Glibc)
import Glibc
#endif

/// Whole files and directory listings, for the tools that read the package's own sources
/// (the conformance generator reads `Spec/` and `Tests/`, and writes the matrix) and for
/// test fixtures (the fuzz targets' disk images).
///
/// Not for guest data: files here are read whole into memory; text is decoded as UTF-8
/// (invalid bytes become U+FFFD).
public enum TextFile {
    /// The contents of the file at `path`, as text.
    public static func read(_ path: String) throws(SystemError) -> String {
        String(decoding: try bytes(path), as: UTF8.self)
    }

    /// The contents of the file at `path`, as bytes.
    public static func bytes(_ path: String) throws(SystemError) -> [UInt8] {
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
        return bytes
    }

    /// Replaces the file at `path` with `text` (created with mode 0644 if it does not exist).
    public static func write(_ text: String, to path: String) throws(SystemError) {
        try write(bytes: Array(text.utf8), to: path)
    }

    /// Replaces the file at `path` with `bytes` (created with `mode` if it does not exist).
    public static func write(bytes: [UInt8], to path: String, mode: mode_t = 0o644) throws(SystemError) {
        let fd = FileDescriptor(adopting: try valueOrErrno("open") {
            Glibc.open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        })
        defer { fd.close() }
        var written = 0
        while written < bytes.count {
            let offset = written
            written += try valueOrErrno("write") {
                bytes.withUnsafeBytes { Glibc.write(fd.rawValue, $0.baseAddress! + offset, $0.count - offset) }
            }
        }
    }

    /// Removes the file at `path`; a file already gone is not an error.
    public static func remove(_ path: String) throws(SystemError) {
        guard unlink(path) != 0 else { return }
        let error = errno
        if error != ENOENT { throw SystemError(errno: error, operation: "unlink") }
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
