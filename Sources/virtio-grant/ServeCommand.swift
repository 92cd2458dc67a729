import Synchronization
import VirtioCore
import VirtioDevices
import VirtioScheduler
import VirtioTransport
import VirtioSystem

/// `virtio-grant serve`: a back-end process. It listens on `--socket` (or, with `--vfs` and
/// `--guest NAME=SOCKET,...`, on one socket per named guest), serves each connection a fresh
/// device, and prints JSON lines: one per socket when it listens, one per session when it ends
/// (its report). It stops on SIGINT/SIGTERM, or after `--sessions N` sessions ended.
struct ServeCommand {
    /// Where it listens, and the guest each socket is (`--guest`), if named.
    let listeners: [SharedDeviceListener]
    let device: String
    let queues: Int
    let image: String?
    let readOnly: Bool
    /// blk: `--aio io_uring|sync` (GHT-BLK-13) and `--direct` (O_DIRECT, GHT-BLK-24).
    let asynchronousIO: BlockDevice.AsynchronousIO
    let direct: Bool
    let guestCID: Int
    let vsockSocket: String?
    /// `--net-source BYTES`: the switch's traffic source (GHT-NET-10), for `bench net`.
    let netSource: Int?
    let sessions: Int?
    let verbose: Bool
    /// `--max-queue-size N`: the largest queue a blk device accepts (GHT-VU-25).
    let maxQueueSize: Int
    /// `--poll MICROSECONDS`: the workers poll, backing off after that long idle (GHT-ASY-08).
    let execution: QueueExecution
    /// `--worker-threads N`: a pool of N threads serves every queue (GHT-ASY-10).
    let workerThreads: Int?
    /// `--worker-cpus L`: where the queue threads run.
    let workerCPUs: [Int]
    /// `--vfs N`: the connections share N virtual functions in turns.
    let scheduling: SharedDeviceConfiguration?
    /// `--hold-ms N`: how long checksum-late keeps each request.
    let holdMilliseconds: Int

    init(_ arguments: ArraySlice<String>) throws(UsageError) {
        let options = try Options(arguments, options: Set(["socket", "device", "queues", "sessions", "image", "guest-cid", "vsock-socket", "max-queue-size", "poll", "worker-threads", "worker-cpus", "aio", "net-source", "hold-ms"]).union(SchedulerOptions.names), flags: ["verbose", "read-only", "direct"])
        guard options.positional.isEmpty else { throw UsageError(description: "unexpected argument '\(options.positional[0])'") }
        device = try options.choice("device", default: "checksum", from: ["checksum", "checksum-late", "echo", "blk", "net", "rng", "vsock"])
        scheduling = try SchedulerOptions.parse(options, device: device)
        if let named = scheduling?.guests, !named.isEmpty {
            guard options.string("socket") == nil else { throw UsageError(description: "--socket and --guest do not mix: each --guest names its own socket") }
            listeners = named.map { SharedDeviceListener(socket: $0.socket, guest: $0) }
        } else {
            guard let socket = options.string("socket") else { throw UsageError(description: "serve needs --socket PATH (or --vfs N with --guest NAME=SOCKET)") }
            guard socket.utf8.count < 108 else { throw UsageError(description: "--socket path longer than a unix socket address allows") }
            listeners = [SharedDeviceListener(socket: socket, guest: nil)]
        }
        queues = try options.int("queues", default: 1, in: 1...64)
        image = options.string("image")
        readOnly = options.flag("read-only")
        direct = options.flag("direct")
        // auto: io_uring with O_DIRECT, where requests wait for the disk and many in the kernel
        // pay; through the page cache a preadv/pwritev on the queue thread is cheaper on this
        // class of machine (io_uring punts buffered writes to its kernel workers: the guest's
        // dd wrote at 0.6x, README "The data path for real workloads").
        let aio = try options.choice("aio", default: "auto", from: ["auto"] + BlockDevice.AsynchronousIO.allCases.map(\.rawValue))
        asynchronousIO = aio == "auto" ? (direct ? .ioUring : .synchronous) : BlockDevice.AsynchronousIO(rawValue: aio)!
        guard device == "blk" || (options.string("aio") == nil && !direct) else { throw UsageError(description: "--aio and --direct are for --device blk") }
        guard (device == "blk") == (image != nil) else {
            throw UsageError(description: device == "blk" ? "serve --device blk needs --image FILE" : "--image is for --device blk")
        }
        // vsock: the guest's CID (VMADDR_CID_ANY and the reserved 0...2 excluded) and the host's unix socket.
        guestCID = try options.int("guest-cid", default: 3, in: 3...Int(UInt32.max - 1))
        vsockSocket = options.string("vsock-socket")
        guard device == "vsock" || (options.string("guest-cid") == nil && vsockSocket == nil) else {
            throw UsageError(description: "--guest-cid and --vsock-socket are for --device vsock")
        }
        guard device != "vsock" || vsockSocket != nil else { throw UsageError(description: "serve --device vsock needs --vsock-socket PATH") }
        guard (vsockSocket?.utf8.count ?? 0) < 96 else { throw UsageError(description: "--vsock-socket path too long for a unix socket address with a port") }
        netSource = options.string("net-source") == nil ? nil : try options.int("net-source", default: 64, in: 60...1518)
        guard device == "net" || netSource == nil else { throw UsageError(description: "--net-source is for --device net") }
        sessions = options.string("sessions") == nil ? nil : try options.int("sessions", default: 1, in: 1...1_000_000)
        verbose = options.flag("verbose")
        maxQueueSize = try options.int("max-queue-size", default: 32768, in: 1...32768)
        execution = options.string("poll") == nil ? .sleeping : .polling(idleMicroseconds: try options.int("poll", default: 50, in: 0...10_000_000))
        workerThreads = options.string("worker-threads") == nil ? nil : try options.int("worker-threads", default: 1, in: 1...256)
        workerCPUs = try options.ints("worker-cpus", default: [], in: 0...1023)
        holdMilliseconds = try options.int("hold-ms", default: 2, in: 0...60_000)
        guard device == "checksum-late" || options.string("hold-ms") == nil else { throw UsageError(description: "--hold-ms is for --device checksum-late") }
    }

    func run() -> Int32 {
        let stop: ServeStop
        do { stop = try ServeStop() } catch {
            report(error: "\(error)")
            return 1
        }
        let ended = Atomic<Int>(0)
        var configuration = BackEndConfiguration()
        // The log goes to stderr (on by default, info and above); --verbose adds each message.
        if verbose { configuration.logLevel = .debug }
        configuration.execution = execution
        configuration.workerCPUs = workerCPUs
        if let workerThreads {
            do {
                configuration.queueThreads = try QueueThreadPool(threads: workerThreads, execution: execution, cpus: workerCPUs)
            } catch {
                report(error: "cannot start \(workerThreads) queue threads: \(error)")
                return 1
            }
        }
        let limit = sessions
        let makeDevice: @Sendable () -> any VirtioDevice
        let shared: SharedDevice?
        do {
            makeDevice = try deviceFactory()
            shared = try scheduling.map { try SharedDevice($0, makeDevice: makeDevice) }
        } catch {
            report(error: "\(error)")
            return 1
        }
        var backEnds: [BackEnd] = []
        for listener in listeners {
            configuration.onSessionEnd = { report in
                var line = Self.json(report)
                if let name = listener.guest?.name { line.add("guest_name", name) }
                if let (guest, stats) = shared?.guest(ofSession: report.id, on: listener) { Self.add(stats, of: guest, to: &line) }
                StandardStream.output.writeLine(line.text)
                let count = ended.add(1, ordering: .relaxed).newValue
                if let limit, count >= limit { stop.stop() }
            }
            do {
                backEnds.append(try BackEnd(socketPath: listener.socket, configuration: configuration) { shared?.makeDevice(for: listener) ?? makeDevice() })
            } catch {
                report(error: "cannot listen on \(listener.socket): \(error)")
                for b in backEnds { b.stop() }
                for l in listeners.prefix(backEnds.count) { try? TextFile.remove(l.socket) }
                return 1
            }
        }
        // Until SIGINT, SIGTERM or SIGHUP (or --sessions N ended): the library's entry point
        // starts the back-ends, and stops them and every session at the end (GHT-EMB-04).
        do {
            _ = try BackEnd.serveUntilSignal(backEnds, signals: [SignalForwarder.interrupt, SignalForwarder.terminate, SignalForwarder.hangUp], stop: stop) {
                for listener in listeners { StandardStream.output.writeLine(listeningLine(listener).text) }
            }
        } catch {
            report(error: "cannot wait for signals: \(error)")
            for b in backEnds { b.stop() }
            for l in listeners { try? TextFile.remove(l.socket) }
            return 1
        }
        for l in listeners { try? TextFile.remove(l.socket) }
        return 0
    }

    /// The line that says a socket is ready for connections.
    private func listeningLine(_ listener: SharedDeviceListener) -> JSONLine {
        var line = JSONLine()
        line.add("event", "listening")
        line.add("socket", listener.socket)
        if let guest = listener.guest { line.add("guest_name", guest.name) }
        line.add("device", device)
        line.add("pid", Int(CurrentProcess.id))
        if let scheduling {
            line.add("vfs", scheduling.functionCount)
            line.add("mapping", "\(scheduling.scheduler.mapping)")
            line.add("policy", scheduling.scheduler.policy.description)
        }
        return line
    }

    /// What each connection is served: the image is opened once, before listening, so that a
    /// missing or unreadable file is reported at start.
    private func deviceFactory() throws -> @Sendable () -> any VirtioDevice {
        let queues = self.queues
        switch device {
        case "echo":
            return { EchoDevice(queueCount: queues, maxQueueSize: 32768) }
        case "blk":
            let file: StorageFile
            do {
                file = try StorageFile(path: image!, writable: !readOnly, direct: direct)
            } catch {
                throw UsageError(description: "cannot open image \(image!): \(error)")
            }
            var configuration = BlockDevice.Configuration()
            configuration.queueCount = queues
            configuration.readOnly = readOnly
            configuration.maxQueueSize = maxQueueSize
            configuration.asynchronousIO = asynchronousIO
            return { [configuration] in BlockDevice(file: file, configuration: configuration) }
        case "checksum-late":
            // Completes out of order, from a thread of its own (a back-end to kill mid-stream).
            let hold = holdMilliseconds
            return { LateChecksumDevice(queueCount: queues, holdMilliseconds: hold) }
        case "rng":
            return { EntropyDevice() }
        case "vsock":
            // One host side for the process: its listener is up before the first guest connects.
            let host: VsockHost
            do { host = try VsockHost(socketPath: vsockSocket!) } catch { throw UsageError(description: "cannot listen on \(vsockSocket!): \(error)") }
            let cid = UInt64(guestCID)
            return { VsockDevice(guestCID: cid, host: host) }
        case "net":
            // One switch for the process: every connection is a port of it.
            let networkSwitch = NetworkSwitch(sourceFrameLength: netSource)
            return { NetworkDevice(switch: networkSwitch) }
        default:
            return { ChecksumEchoDevice(queueCount: queues, maxQueueSize: 32768) }
        }
    }

    private func report(error: String) {
        var line = JSONLine()
        line.add("event", "error")
        line.add("error", error)
        StandardStream.output.writeLine(line.text)
    }

    /// What the scheduler gave the session's guest.
    static func add(_ s: GuestStatistics, of guest: DomainID, to line: inout JSONLine) {
        line.add("guest", Int(guest.rawValue))
        line.add("sched_requests", Int(s.requests))
        line.add("sched_bytes", Int(s.bytes))
        line.add("sched_turns", Int(s.turns))
        line.add("sched_denied", Int(s.denied))
        line.add("sched_preemptions", Int(s.preemptions))
        line.add("sched_wait_ms", Double(s.waitNanoseconds) / 1e6, decimals: 3)
        line.add("sched_hold_ms", Double(s.holdNanoseconds) / 1e6, decimals: 3)
        line.add("sched_cut_off", s.cutOff)
    }

    static func json(_ r: SessionReport) -> JSONLine {
        var line = JSONLine()
        line.add("event", "session")
        line.add("id", r.id)
        if let g = r.granter { line.add("granter", Int(g.rawValue)) }
        line.add("end", r.end?.description ?? "running")
        line.add("chains", r.chains)
        line.add("kicks", r.kicks)
        line.add("notifications", r.notifications)
        line.add("iotlb_hits", r.iotlbHits)
        line.add("iotlb_misses", r.iotlbMisses)
        line.add("iotlb_hit_rate", r.iotlbHitRate, decimals: 4)
        line.add("faults", r.faults.values.reduce(0, +))
        for (kind, n) in r.faults.sorted(by: { $0.key.rawValue < $1.key.rawValue }) { line.add("fault_\(kind)", n) }
        line.add("broken_queues", r.brokenQueues.count)
        for (q, e) in r.brokenQueues.sorted(by: { $0.key < $1.key }) { line.add("broken_queue_\(q)", "\(e)") }
        line.add("worker_cpu_s", r.workerCPUSeconds, decimals: 6)
        return line
    }
}
