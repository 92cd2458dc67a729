#if canImport(Glibc)
import Glibc
#endif
import CVirtioShim

/// A one-way byte stream between processes: how a parent reads what a spawned child prints
/// (map ``writeEnd`` to the child's descriptor 1, then close it in the parent).
public struct Pipe: Sendable {
    public let readEnd: FileDescriptor
    public let writeEnd: FileDescriptor

    /// Creates a pipe, both ends close-on-exec.
    ///
    /// The corresponding C call is `pipe2(fds, O_CLOEXEC)`.
    public init() throws(SystemError) {
        var fds: (Int32, Int32) = (-1, -1)
        try withUnsafeMutableBytes(of: &fds) { raw throws(SystemError) in
            let p = raw.baseAddress!.assumingMemoryBound(to: Int32.self)
            try nothingOrErrno("pipe2") { CVirtioShim_pipe_cloexec(p) }
        }
        readEnd = FileDescriptor(adopting: fds.0)
        writeEnd = FileDescriptor(adopting: fds.1)
    }
}

/// Reads newline-terminated lines from a descriptor (a pipe from a child), each wait bounded.
///
/// Lines are bounded too: a line longer than `maxLineLength` is an error, so a peer that never
/// writes a newline cannot make the reader grow without limit.
public struct LineReader {
    /// Why no line came.
    public enum Failure: Error, Equatable, Sendable {
        /// The writer closed its end; the bytes of an unterminated last line are dropped.
        case endOfStream
        case timedOut
        case lineTooLong
        case system(SystemError)
    }

    public let fd: FileDescriptor
    public let maxLineLength: Int
    private var buffer: [UInt8] = []

    public init(_ fd: FileDescriptor, maxLineLength: Int = 64 * 1024) {
        self.fd = fd
        self.maxLineLength = maxLineLength
    }

    /// The next line without its newline, waiting at most `timeoutMilliseconds` in all
    /// (negative: forever).
    public mutating func readLine(timeoutMilliseconds: Int32) throws(Failure) -> String {
        let timeout = Timeout(milliseconds: timeoutMilliseconds)
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            if let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: buffer[..<newline], as: UTF8.self)
                buffer.removeSubrange(...newline)
                return line
            }
            guard buffer.count <= maxLineLength else { throw .lineTooLong }
            let raw = fd.rawValue
            let ready: Bool
            do {
                ready = try fd.isReady(for: Int16(POLLIN), within: timeout)
            } catch {
                throw .system(error)
            }
            if !ready { throw .timedOut }
            let n: Int
            do {
                n = try valueOrErrno("read") { chunk.withUnsafeMutableBytes { read(raw, $0.baseAddress, $0.count) } }
            } catch {
                throw .system(error)
            }
            if n == 0 { throw .endOfStream }
            buffer += chunk[..<n]
        }
    }
}
