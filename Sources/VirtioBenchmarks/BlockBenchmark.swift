import VirtioCore
import VirtioDevices
import VirtioSystem
import VirtioTransport

/// `virtio-grant bench blk`: a vhost-user-blk load generator (our ``FrontEnd``, guest-physical
/// addressing, which every vhost-user back-end understands) measured against our blk back-end
/// (`virtio-grant serve --device blk`, this build's executable) and against
/// `qemu-storage-daemon` with `aio=io_uring` (the anchor) in the same run, each a process of
/// its own on an image in a temporary directory.
///
/// Per back-end, cache mode (page cache, O_DIRECT) and queue count, the back-end is started,
/// pinned to its core, checked (``BlockVerification``: written patterns read back), then
/// measured at every point: 4 KiB random reads or writes at a queue depth per queue, with a
/// client that sleeps on the call eventfd or one that busy-polls the used ring. One JSON line
/// per point: IOPS, p50/p99 latency, and IOPS per CPU-second of the whole back-end process
/// (`/proc/PID/stat`) and of the generator, over the measured interval (warm-up excluded).
public struct BlockBenchmark: Sendable {
    public enum BackEndKind: String, Sendable { case ours, qsd }
    public enum Cache: String, Sendable { case page, direct }
    public enum Operation: String, Sendable { case randread, randwrite }
    public enum Client: String, Sendable { case sleep, poll }

    /// The size of every request's data.
    public static let blockBytes = 4096

    public var backEnds: [BackEndKind] = [.ours, .qsd]
    public var caches: [Cache] = [.page, .direct]
    public var operations: [Operation] = [.randread, .randwrite]
    public var depths: [Int] = [1, 32, 128]
    public var queueCounts: [Int] = [1, 2]
    public var clients: [Client] = [.sleep, .poll]
    /// Measured seconds per point, after `warmUp` seconds that are not measured.
    public var seconds = 3.0
    public var warmUp = 0.5
    public var imageMiB = 256
    /// The ring size the generator asks for (QD 128 needs at least 128; 256 is our device's cap today).
    public var queueSize = 256
    /// Extra arguments for `serve` (our back-end), as given: `--aio io_uring`, for instance.
    public var serveArguments: [String] = []
    public var qsdPath = "/usr/bin/qemu-storage-daemon"
    /// Cores for the generator (this process) and the back-end; nil leaves a side unpinned.
    public var generatorCore: Int? = 0
    public var backEndCore: Int? = 1
    /// Blocks per queue written and read back before a back-end is measured.
    public var verifyBlocks = 64

    public init() {}

    /// Prints the JSON lines; 0 when every back-end started, verified and ran every point, 1
    /// otherwise (each failure is an `error` line too).
    public func run() -> Int32 {
        var top = JSONLine()
        top.add("workload", "blk")
        guard let directory = try? TemporaryDirectory(prefix: "virtio-grant-blk") else {
            _ = fail(top, "cannot create a temporary directory")
            return 1
        }
        defer { directory.remove() }
        let image = directory.path + "/disk.img"
        do {
            // Real bytes, not a sparse file: reads must come from the page cache, not from holes.
            try TextFile.write(bytes: (0..<(imageMiB << 20)).map { UInt8(truncatingIfNeeded: $0 &* 131 &+ $0 >> 12) }, to: image)
            if let generatorCore { try pin(pid: CurrentProcess.id, to: generatorCore) }
        } catch {
            _ = fail(top, "\(error)")
            return 1
        }
        var status: Int32 = 0
        for kind in backEnds {
            for cache in caches {
                for queues in queueCounts {
                    let ok = measure(kind, cache: cache, queues: queues, image: image, socket: directory.path + "/\(kind).sock")
                    if !ok { status = 1 }
                }
            }
        }
        return status
    }

    /// One back-end process: verified, then every point. False after an error line.
    func measure(_ kind: BackEndKind, cache: Cache, queues: Int, image: String, socket: String) -> Bool {
        // The image's dirty pages (its creation, the previous back-end's writes) go to the disk
        // now, not as writeback under the next back-end's measured interval: whichever back-end
        // came first measured a quarter of the other's write rate before.
        do {
            try StorageFile(path: image, writable: true).synchronize()
        } catch {
            return fail(header(kind, cache, queues), "cannot synchronize the image: \(error)")
        }
        let backEnd: BlockBackEndProcess
        do {
            backEnd = try BlockBackEndProcess(kind: kind, direct: cache == .direct, queues: queues, image: image, socket: socket,
                                              extraArguments: kind == .ours ? serveArguments : [], qsdPath: qsdPath, core: backEndCore)
        } catch {
            return fail(header(kind, cache, queues), error.description)
        }
        defer { backEnd.stop() }
        let diskBlocks = UInt64(imageMiB << 20) / UInt64(Self.blockBytes)
        do throws(FrontEndError) {
            let frontEnd = try connect(socket, queues: queues, depth: 32)
            let check = BlockVerification.run(frontEnd, blocks: verifyBlocks, diskBlocks: diskBlocks, nonce: SystemClock.monotonic.nanoseconds)
            frontEnd.close()
            _ = backEnd.sessionReport()
            var line = header(kind, cache, queues)
            line.add("measure", "verify")
            line.add("ok", check.ok)
            line.add("blocks_written", check.written)
            line.add("blocks_read_back", check.readBack)
            line.add("mismatches", check.mismatches)
            line.add("errors", check.errors)
            if let failure = check.failure { line.add("error", failure) }
            StandardStream.output.writeLine(line.text)
            guard check.ok else { return false }
        } catch {
            // qemu-storage-daemon 7.2 (libvhost-user) offers no STATUS protocol feature, which
            // our FrontEnd requires today: say so rather than leave a bare negotiation error.
            let hint = kind == .qsd ? " (our FrontEnd requires the STATUS protocol feature and seals its read-only memory; libvhost-user offers no STATUS and maps every region read-write)" : ""
            return fail(header(kind, cache, queues), "verification: \(error)\(hint)")
        }
        var ok = true
        for operation in operations {
            for depth in depths {
                for client in clients {
                    let point = BlockPoint(benchmark: self, operation: operation, depth: depth, client: client, diskBlocks: diskBlocks)
                    var line = header(kind, cache, queues)
                    do throws(FrontEndError) {
                        let frontEnd = try connect(socket, queues: queues, depth: depth)
                        let result = point.run(frontEnd, backEndPID: backEnd.pid)
                        frontEnd.close()
                        let report = backEnd.sessionReport()
                        point.describe(result, into: &line)
                        if let report, report.int("broken_queues") != 0 || report.int("faults") != 0 {
                            line.add("error", "the back-end broke a queue or faulted: \(report.values)")
                            ok = false
                        }
                        if !result.ok { ok = false }
                    } catch {
                        point.describe(nil, into: &line)
                        line.add("error", "\(error)")
                        ok = false
                    }
                    StandardStream.output.writeLine(line.text)
                }
            }
        }
        return ok
    }

    /// A front-end with `queues` queues able to keep `depth` requests in flight on each.
    func connect(_ socket: String, queues: Int, depth: Int) throws(FrontEndError) -> FrontEnd {
        var c = FrontEndConfiguration()
        c.mode = .guestPhysical
        c.requiresStatus = false
        c.sealsReadOnlyMemory = false
        c.queueCount = queues
        c.queueSize = queueSize
        c.maxOutstanding = max(depth, 32)
        c.maxRequestSize = BlockRequestHeader.byteCount + Self.blockBytes
        c.maxReplySize = Self.blockBytes + 1
        if queues > 1 { c.deviceFeatures = .blockMultiQueue }
        return try FrontEnd.connect(socketPath: socket, configuration: c)
    }

    func header(_ kind: BackEndKind, _ cache: Cache, _ queues: Int) -> JSONLine {
        var line = JSONLine()
        line.add("workload", "blk")
        line.add("backend", kind.rawValue)
        line.add("cache", cache.rawValue)
        line.add("queues", queues)
        return line
    }

    /// Prints `line` with `error`; false.
    func fail(_ line: JSONLine, _ error: String) -> Bool {
        var line = line
        line.add("ok", false)
        line.add("error", error)
        StandardStream.output.writeLine(line.text)
        return false
    }
}
