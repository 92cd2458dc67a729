#if canImport(Glibc)
import Glibc
#endif

extension ChildProcess {
    /// What a child run to completion printed, and how it ended.
    public struct Output: Sendable {
        /// How the child ended.
        public let status: ExitStatus
        /// Everything it wrote to its standard output (decoded as UTF-8).
        public let standardOutput: String
    }

    /// Runs the executable at `path` to completion, its standard output on a pipe read here
    /// (standard error is inherited).
    ///
    /// The child is started as ``spawn(path:arguments:environment:fileDescriptors:)`` starts
    /// it. The corresponding C functions are `pipe2`, `posix_spawn`, `read` until end of file,
    /// then `waitpid`.
    public static func run(path: String, arguments: [String] = []) throws(SystemError) -> Output {
        let pipe = try Pipe()
        let child = try spawn(path: path, arguments: arguments, fileDescriptors: [(child: 1, parent: pipe.writeEnd)])
        pipe.writeEnd.close()
        defer { pipe.readEnd.close() }
        var output: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        let fd = pipe.readEnd.rawValue
        while true {
            let count = try valueOrErrno("read") { chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) } }
            if count == 0 { break }
            output += chunk[..<count]
        }
        // The child closed its output: it has exited or is about to.
        var status: ExitStatus?
        while status == nil { status = try child.wait() }
        return Output(status: status!, standardOutput: String(decoding: output, as: UTF8.self))
    }
}
