import VirtioSystem
import VirtioCore
import VirtioTransport

/// A child running the `virtio-grant` executable with its standard output on a pipe read
/// here line by line: how the demo and `bench xproc` start back-ends and guests as processes
/// of their own, and how tests start them for the cross-process cases.
public struct SpawnedCommand {
    public let process: ChildProcess
    private var output: LineReader

    /// Starts `virtio-grant arguments...` (the executable beside this process's own: under
    /// `swift test`, the build directory's).
    public init(_ arguments: [String]) throws(SystemError) {
        let pipe = try Pipe()
        process = try ChildProcess.spawn(path: try Self.executablePath, arguments: arguments, fileDescriptors: [(child: 1, parent: pipe.writeEnd)])
        pipe.writeEnd.close()
        output = LineReader(pipe.readEnd)
    }

    /// The `virtio-grant` executable beside this process's.
    public static var executablePath: String {
        get throws(SystemError) { try ChildProcess.executableDirectory + "/virtio-grant" }
    }

    /// The next line the child printed, parsed; `nil` when it printed something else, closed
    /// its output or stayed silent for `timeoutMilliseconds`.
    public mutating func nextObject(timeoutMilliseconds: Int32) -> JSONObject? {
        guard let line = try? output.readLine(timeoutMilliseconds: timeoutMilliseconds) else { return nil }
        return JSONObject(parsing: line)
    }

    /// The next line the child printed, as text.
    public mutating func nextLine(timeoutMilliseconds: Int32) throws(LineReader.Failure) -> String {
        try output.readLine(timeoutMilliseconds: timeoutMilliseconds)
    }

    /// Waits for the child to exit, killing it if it outlives `timeoutMilliseconds`.
    public func finish(timeoutMilliseconds: Int32) -> ChildProcess.ExitStatus? {
        if let status = try? process.wait(timeoutMilliseconds: timeoutMilliseconds) { return status }
        try? process.kill()
        return try? process.wait(timeoutMilliseconds: 5000)
    }
}
