import VirtioSystem

/// The back-end a ``BackEndChecker`` checks.
public enum CheckTarget: Sendable {
    /// A back-end already listening on this unix socket (`check --socket PATH`; a Swift
    /// device's in-process back-end under `swift test`). The checker connects once per case.
    case socket(String)
    /// A command line run by `/bin/sh -c`, where `{sock}` stands for a socket path the checker
    /// chooses (`check --backend-cmd`). The checker starts a fresh process for every case, waits
    /// for the socket, watches the process, and kills it when the case ends (GHT-CHK-05).
    case command(String)
}

/// A back-end process the checker started for one case: its socket, its output, and how it ended.
final class CheckedProcess {
    let process: ChildProcess
    let socketPath: String
    let directory: TemporaryDirectory
    /// The process's standard output and error go into this memfd, kept as evidence.
    private let output: SharedMemory

    /// Starts `command` with `{sock}` replaced and waits up to `timeoutMilliseconds` for the socket.
    init(command: String, timeoutMilliseconds: Int) throws(CheckError) {
        do {
            directory = try TemporaryDirectory(prefix: "virtio-grant-check")
            socketPath = directory.path + "/backend.sock"
            output = try SharedMemory.createUnsealed(name: "check-backend-output", size: 64 * 1024)
            let line = "exec " + command.split(separator: "{sock}", omittingEmptySubsequences: false).joined(separator: socketPath)
            process = try ChildProcess.spawn(path: "/bin/sh", arguments: ["-c", line],
                                             fileDescriptors: [(child: 1, parent: output.fd), (child: 2, parent: output.fd)])
        } catch {
            throw CheckError.setup("cannot start the back-end: \(error)")
        }
        let deadline = Timeout(milliseconds: Int32(timeoutMilliseconds))
        while !TextFile.exists(socketPath) {
            if let status = exitStatus {
                let text = outputText
                end()
                throw CheckError.setup("the back-end ended before listening: \(status)\n\(text)")
            }
            if deadline.remainingMilliseconds() == 0 {
                end()
                throw CheckError.setup("the back-end did not listen on \(socketPath) within \(timeoutMilliseconds) ms")
            }
            SystemClock.sleep(milliseconds: 5)
        }
    }

    /// How the process ended, once it has (it is reaped here).
    var exitStatus: ChildProcess.ExitStatus? { (try? process.wait(timeoutMilliseconds: 0)) ?? nil }

    /// Waits up to `milliseconds` for the process to end by itself.
    func waitForExit(milliseconds: Int32) -> ChildProcess.ExitStatus? { (try? process.wait(timeoutMilliseconds: milliseconds)) ?? nil }

    /// What the process wrote (of its first 64 KiB): its first and last 1500 bytes.
    var outputText: String {
        let bytes = UnsafeRawBufferPointer(start: UnsafeRawPointer(bitPattern: output.range.startAddress), count: output.size)
        let text = bytes.prefix { $0 != 0 }
        guard text.count > 3000 else { return String(decoding: text, as: UTF8.self) }
        return String(decoding: text.prefix(1500), as: UTF8.self) + "\n[…]\n" + String(decoding: text.suffix(1500), as: UTF8.self)
    }

    /// Kills the process (SIGKILL: the case is over, nothing it does now counts), reaps it, and
    /// removes its socket, directory and output file (GHT-CHK-06).
    func end() {
        try? process.kill()
        _ = try? process.wait(timeoutMilliseconds: 5000)
        output.unmap()
        directory.remove()
    }
}

/// Why a case could not be run, or ended other than by a verdict.
enum CheckError: Error, CustomStringConvertible {
    case setup(String)
    /// The back-end broke a rule: the evidence.
    case violation(String)
    /// No answer within the bound: what was awaited.
    case hang(String)
    /// The back-end closed the connection (allowed only where the case says so).
    case closed(String)
    case notApplicable(String)

    var description: String {
        switch self {
        case .setup(let s): "setup: \(s)"
        case .violation(let s): s
        case .hang(let s): "no answer: \(s)"
        case .closed(let s): "connection closed: \(s)"
        case .notApplicable(let s): "not applicable: \(s)"
        }
    }
}
