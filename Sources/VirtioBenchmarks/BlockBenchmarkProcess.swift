import VirtioCore
import VirtioSystem
import VirtioWorkloads

/// The CPU time a process has used, from `/proc/PID/stat` (proc(5)): `utime` and `stime`,
/// fields 14 and 15, in clock ticks of `USER_HZ` (100 on Linux). The times of every thread of
/// the process are summed by the kernel, io_uring's io-wq workers included (they are threads
/// of the process that owns the ring).
enum ProcessCPU {
    /// `USER_HZ`: the unit of the times in `/proc/PID/stat` (fixed at 100 by the kernel ABI).
    static let ticksPerSecond = 100.0

    /// `utime + stime` in seconds from the text of a `/proc/PID/stat` file; nil when the text is
    /// not one. The command name (field 2) is in parentheses and may itself hold spaces and
    /// parentheses, so fields are counted from the last `)`.
    static func seconds(statText text: String) -> Double? {
        guard let close = text.lastIndex(of: ")") else { return nil }
        // After ")": field 3 (state) is the first; utime (14) and stime (15) are the 12th and 13th.
        let fields = text[text.index(after: close)...].split(separator: " ", omittingEmptySubsequences: true)
        guard fields.count >= 13, let user = UInt64(fields[11]), let system = UInt64(fields[12]) else { return nil }
        return Double(user + system) / ticksPerSecond
    }

    /// The CPU seconds process `pid` has used so far; nil when it is gone.
    static func seconds(pid: Int32) -> Double? {
        guard let text = try? TextFile.read("/proc/\(pid)/stat") else { return nil }
        return seconds(statText: text)
    }
}

/// Pins every thread of process `pid` to `core` with `taskset -a -p -c` (threads it starts later
/// inherit the mask from the thread that starts them). Its own output is swallowed: ours is
/// JSON lines.
func pin(pid: Int32, to core: Int) throws(BenchmarkError) {
    do {
        let pipe = try Pipe()
        let taskset = try ChildProcess.spawn(path: "/usr/bin/taskset", arguments: ["-a", "-p", "-c", "\(core)", "\(pid)"],
                                             fileDescriptors: [(child: 1, parent: pipe.writeEnd)])
        pipe.writeEnd.close()
        defer { pipe.readEnd.close() }
        guard try taskset.wait(timeoutMilliseconds: 5000) == .exited(0) else {
            throw BenchmarkError(description: "taskset could not pin process \(pid) to core \(core)")
        }
    } catch let error as BenchmarkError {
        throw error
    } catch {
        throw BenchmarkError(description: "cannot run taskset: \(error)")
    }
}

/// A vhost-user-blk back-end in a process of its own, serving `image` on `socket`.
final class BlockBackEndProcess {
    let kind: BlockBenchmark.BackEndKind
    let pid: Int32
    private let process: ChildProcess
    /// Our `serve`'s output: the listening line, then one line per session.
    private var serve: SpawnedCommand?

    /// Starts the back-end and returns once it listens; pinned to `core` if given.
    /// - ours: `virtio-grant serve --device blk` (this build's executable) plus `extraArguments`,
    ///   and `--direct` for O_DIRECT;
    /// - qsd: `qemu-storage-daemon` with `aio=io_uring` (and `cache.direct=on` for O_DIRECT)
    ///   exporting the image as vhost-user-blk.
    init(kind: BlockBenchmark.BackEndKind, direct: Bool, queues: Int, image: String, socket: String,
         extraArguments: [String], qsdPath: String, core: Int?) throws(BenchmarkError) {
        self.kind = kind
        switch kind {
        case .ours:
            let arguments = ["serve", "--device", "blk", "--image", image, "--socket", socket, "--queues", "\(queues)"]
                + (direct ? ["--direct"] : []) + extraArguments
            var command: SpawnedCommand
            do { command = try SpawnedCommand(arguments) } catch { throw BenchmarkError(description: "cannot start serve: \(error)") }
            let line = command.nextObject(timeoutMilliseconds: 10_000)
            guard line?.string("event") == "listening" else {
                let status = command.finish(timeoutMilliseconds: 2000)
                let why = direct ? " (O_DIRECT is not yet available in this build's serve: it refused --direct or an extra argument)" : ""
                throw BenchmarkError(description: "serve \(arguments.dropFirst().joined(separator: " ")) did not listen: \(status.map { "\($0)" } ?? "no exit")\(why)")
            }
            serve = command
            process = command.process
        case .qsd:
            let cache = direct ? ",cache.direct=on" : ""
            let arguments = ["--blockdev", "driver=file,node-name=f,filename=\(image),aio=io_uring\(cache)",
                             "--export", "type=vhost-user-blk,id=e,node-name=f,addr.type=unix,addr.path=\(socket),writable=on,num-queues=\(queues)"]
            do { process = try ChildProcess.spawn(path: qsdPath, arguments: arguments) } catch {
                throw BenchmarkError(description: "cannot start \(qsdPath): \(error)")
            }
            var listening = false
            for _ in 0..<1000 where process.exitStatus == nil {
                if TextFile.exists(socket) { listening = true; break }
                SystemClock.sleep(milliseconds: 10)
            }
            guard listening else {
                Self.end(process)
                throw BenchmarkError(description: "qemu-storage-daemon did not listen on \(socket)")
            }
        }
        pid = process.pid
        if let core {
            do { try pin(pid: pid, to: core) } catch {
                Self.end(process)
                throw error
            }
        }
    }

    /// CPU seconds used so far by the whole back-end process.
    var cpuSeconds: Double? { ProcessCPU.seconds(pid: pid) }

    /// For ours: the report line of the session that just ended (nil for qsd, or when none came).
    func sessionReport() -> JSONObject? {
        guard serve != nil else { return nil }
        return serve!.nextObject(timeoutMilliseconds: 5000)
    }

    /// Stops the back-end (SIGTERM, then SIGKILL if it lingers).
    func stop() { Self.end(process) }

    private static func end(_ process: ChildProcess) {
        try? process.kill(SignalForwarder.terminate)
        if (try? process.wait(timeoutMilliseconds: 5000)) == nil {
            try? process.kill()
            _ = try? process.wait(timeoutMilliseconds: 5000)
        }
    }
}
