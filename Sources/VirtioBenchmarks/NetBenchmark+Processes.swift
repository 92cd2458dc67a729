import VirtioCore
import VirtioSystem

/// The processes of one `bench net` measurement: `dpdk-testpmd` instances and a
/// `virtio-grant serve`, each started through `/bin/sh -c 'exec taskset -c CPU ...'` so that
/// it is pinned and its logs go to files of the run's temporary directory, and the process ID
/// is the program's own (for /proc/PID/stat).
struct NetProcess {
    let process: ChildProcess
    let log: String

    /// Starts `command` (already quoted for the shell) pinned to `cpu`, standard error to `log`;
    /// standard output to `log` as well, or, when `output` is given, to that pipe's write end.
    static func start(_ command: [String], cpu: Int, log: String, output: Pipe? = nil) throws(SystemError) -> NetProcess {
        let redirect = output == nil ? ">\(log) 2>&1" : "2>\(log)"
        let line = "exec taskset -c \(cpu) " + command.joined(separator: " ") + " " + redirect
        var mapped: [(child: Int32, parent: FileDescriptor)] = []
        if let output { mapped.append((child: 1, parent: output.writeEnd)) }
        let process = try ChildProcess.spawn(path: "/bin/sh", arguments: ["-c", line], fileDescriptors: mapped)
        return NetProcess(process: process, log: log)
    }

    /// The process's CPU time so far (user and system, all threads) from /proc/PID/stat:
    /// fields 14 and 15, in clock ticks of USER_HZ (100 on Linux, fixed by its ABI).
    var cpuSeconds: Double? {
        guard let text = try? TextFile.read("/proc/\(process.pid)/stat"), let close = text.lastIndex(of: ")") else { return nil }
        // After "pid (comm) ", field 3 (state) is the first; utime is field 14, stime 15.
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        return (user + system) / 100
    }

    /// SIGINT (testpmd prints its totals and exits; serve stops), then SIGKILL if it lingers.
    func stop() {
        try? process.kill(2)
        if (try? process.wait(timeoutMilliseconds: 5000)) ?? nil == nil {
            try? process.kill()
            _ = try? process.wait(timeoutMilliseconds: 5000)
        }
    }
}

/// The command lines of DPDK 22.11's `dpdk-testpmd` the benchmark runs (the issue's
/// settings: no huge pages, 512 MB, one memory file, no PCI, a file prefix of its own per
/// process, 16384 mbufs, 64-byte frames).
enum TestPMD {
    static let path = "dpdk-testpmd"

    /// testpmd needs a main lcore and a forwarding lcore: both are put on `cpu` (the main one
    /// only prints statistics). Statistics are printed every second by every instance: without
    /// them a non-interactive testpmd waits for a line on standard input, and ends at its end.
    static func command(cpu: Int, prefix: String, vdev: String, mode: String, extra: [String] = []) -> [String] {
        [path, "--lcores", "'0@\(cpu),1@\(cpu)'", "--no-huge", "-m", "512", "--single-file-segments", "--no-pci",
         "--file-prefix", prefix, "--vdev", "'\(vdev)'", "--log-level", "'lib.eal:error'", "--",
         "--total-num-mbufs=16384", "--forward-mode=\(mode)", "--txpkts=64", "--auto-start", "--no-lsc-interrupt",
         "--stats-period=1"] + extra
    }

    static func virtioUser(socket: String, queueSize: Int) -> String {
        "net_virtio_user0,path=\(socket),queues=1,queue_size=\(queueSize)"
    }

    static func vhost(socket: String) -> String { "net_vhost0,iface=\(socket),queues=1" }
}

/// The cumulative packet counters of one testpmd statistics block ("NIC statistics for port 0":
/// `RX-packets: N ...`, `TX-packets: N ...`).
struct PortCounters {
    var received: UInt64 = 0
    var transmitted: UInt64 = 0

    /// Updates the counters from one line of testpmd's output; true when the line ended a block
    /// (the TX line comes last).
    mutating func parse(_ line: String) -> Bool {
        let words = line.split(separator: " ")
        guard words.count >= 2 else { return false }
        if words[0] == "RX-packets:", let n = UInt64(words[1]) { received = n }
        if words[0] == "TX-packets:", let n = UInt64(words[1]) {
            transmitted = n
            return true
        }
        return false
    }
}
