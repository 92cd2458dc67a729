#if canImport(Glibc)
import Glibc
#endif
import VirtioSystem

/// Runs `path` with `arguments` (no shell) and returns what it wrote to standard output, or
/// `nil` if it could not be started or did not exit with status 0.
func runProcess(_ path: String, _ arguments: [String]) -> String? {
    var fds: [Int32] = [0, 0]
    guard pipe(&fds) == 0 else { return nil }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
    posix_spawn_file_actions_addclose(&actions, fds[0])
    let argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) } + [nil]
    defer { argv.forEach { free($0) } }
    var pid: pid_t = 0
    let spawned = posix_spawn(&pid, path, &actions, nil, argv, environ)
    close(fds[1])
    guard spawned == 0 else {
        close(fds[0])
        return nil
    }
    var output: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = read(fds[0], &buffer, buffer.count)
        if n > 0 { output += buffer[0..<n] } else if n == 0 || errno != EINTR { break }
    }
    close(fds[0])
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    guard status & 0x7f == 0, (status >> 8) & 0xff == 0 else { return nil }
    return String(decoding: output, as: UTF8.self)
}

/// A child running this same executable with its standard output on a pipe we read by lines.
struct SpawnedCommand {
    let process: ChildProcess
    private var output: LineReader

    /// Starts `virtio-grant arguments...`.
    init(_ arguments: [String]) throws(SystemError) {
        let pipe = try Pipe()
        process = try ChildProcess.spawn(path: try Self.executablePath, arguments: arguments, fileDescriptors: [(child: 1, parent: pipe.writeEnd)])
        pipe.writeEnd.close()
        output = LineReader(pipe.readEnd)
    }

    /// This executable, which the demo and `bench xproc` start again as back-end and guests.
    static var executablePath: String {
        get throws(SystemError) { try ChildProcess.executableDirectory + "/virtio-grant" }
    }

    /// The next line the child printed, parsed; `nil` when it printed something else, closed
    /// its output or stayed silent for `timeoutMilliseconds`.
    mutating func nextObject(timeoutMilliseconds: Int32) -> JSONObject? {
        guard let line = try? output.readLine(timeoutMilliseconds: timeoutMilliseconds) else { return nil }
        return JSONObject(parsing: line)
    }

    /// Waits for the child to exit, killing it if it outlives `timeoutMilliseconds`.
    func finish(timeoutMilliseconds: Int32) -> ChildProcess.ExitStatus? {
        if let status = try? process.wait(timeoutMilliseconds: timeoutMilliseconds) { return status }
        try? process.kill()
        return try? process.wait(timeoutMilliseconds: 5000)
    }
}

/// A fresh private directory under $TMPDIR (or /tmp), removed with its files by ``remove()``.
struct TemporaryDirectory {
    let path: String

    init?() {
        let base = getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp"
        var template = Array("\(base)/virtio-grant.XXXXXX".utf8CString)
        guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else { return nil }
        path = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    func remove() {
        guard let dir = opendir(path) else { return }
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != "." && name != ".." { unlink("\(path)/\(name)") }
        }
        closedir(dir)
        rmdir(path)
    }
}
