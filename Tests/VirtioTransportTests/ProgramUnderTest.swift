import Testing

#if canImport(Glibc)
import Glibc
#endif
import VirtioSystem

/// A `virtio-grant` process started by a test (the executable beside the test binary), its
/// standard output read line by line. Killed and reaped when the test lets go of it.
final class ProgramUnderTest {
    let process: ChildProcess
    private var output: LineReader

    init(_ arguments: [String]) throws {
        let pipe = try Pipe()
        process = try ChildProcess.spawn(path: try ChildProcess.executableDirectory + "/virtio-grant", arguments: arguments,
                                         fileDescriptors: [(child: 1, parent: pipe.writeEnd)])
        pipe.writeEnd.close()
        output = LineReader(pipe.readEnd)
    }

    /// `virtio-grant serve` on a fresh socket, once it listens.
    static func serve(device: String = "checksum") throws -> (ProgramUnderTest, String) {
        let path = temporarySocketPath("serve")
        let program = try ProgramUnderTest(["serve", "--socket", path, "--device", device])
        _ = try program.line(containing: "\"listening\"")
        return (program, path)
    }

    /// The next line that contains `text` (earlier lines are skipped).
    func line(containing text: String, timeoutMilliseconds: Int32 = 15_000) throws -> String {
        while true {
            let line = try output.readLine(timeoutMilliseconds: timeoutMilliseconds)
            if line.contains(text) { return line }
        }
    }

    /// Waits for the exit, killing the process if it outlives the timeout.
    func finish(timeoutMilliseconds: Int32 = 15_000) throws -> ChildProcess.ExitStatus? {
        if let status = try process.wait(timeoutMilliseconds: timeoutMilliseconds) { return status }
        try process.kill()
        return try process.wait(timeoutMilliseconds: 5000)
    }

    /// The descriptors the process has open (entries of /proc/PID/fd).
    var openDescriptorCount: Int {
        guard let dir = opendir("/proc/\(process.pid)/fd") else { return -1 }
        defer { closedir(dir) }
        var count = 0
        while readdir(dir) != nil { count += 1 }
        return count - 2   // "." and ".."
    }

    deinit {
        if process.exitStatus == nil {
            try? process.kill()
            _ = try? process.wait(timeoutMilliseconds: 5000)
        }
    }
}

/// The integer value of `"key":` in a flat JSON line.
func jsonInteger(_ line: String, _ key: String) -> Int? {
    let needle = Array("\"\(key)\":".utf8), bytes = Array(line.utf8)
    guard bytes.count >= needle.count,
          let at = (0...(bytes.count - needle.count)).first(where: { bytes[$0..<($0 + needle.count)].elementsEqual(needle) }) else { return nil }
    let digits = bytes[(at + needle.count)...].prefix { $0 == UInt8(ascii: "-") || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }
    return Int(String(decoding: digits, as: UTF8.self))
}

/// Polls `condition` every 5 ms for up to `milliseconds`.
func eventually(within milliseconds: Int = 3000, _ condition: () -> Bool) -> Bool {
    for _ in 0..<(milliseconds / 5) {
        if condition() { return true }
        usleep(5000)
    }
    return condition()
}
