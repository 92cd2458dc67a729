import Synchronization
import VirtioCore
import VirtioDevices
import VirtioGrants
import VirtioTransport
import VirtioSystem
import VhostUser

/// Fuzz target: whole back-end sessions driven by a hostile front-end whose memory changes and
/// vanishes under the back-end (Spec/hostile-peers.md, GHT-LIFE).
///
/// Input: a script of structured steps — well-formed vhost-user messages with fuzzed fields
/// (memory tables and regions over two unsealed memfds, features, every ring setting of two
/// queues with addresses from guest-physical, user, IOVA and grant-handle grids, statuses,
/// IOTLB updates and invalidations, grant tables and revocations, resets), writes into the
/// memfds and the grant table (ring contents, chains, grant entries), truncations of any of the
/// three files to any size, kicks, and pauses — while another thread keeps kicking both queues.
/// A second, well-behaved session (the bystander) shares the process with its own memory.
///
/// Checked inside: the process survives (a SIGBUS or SIGSEGV is a crash); the hostile session
/// ends when its socket is shut; the bystander's memory holds exactly the bytes it wrote and
/// its session still answers; every descriptor of both sessions is closed afterwards.
public enum SessionTarget {
    static let fileSize = 64 * 1024
    static let userBase: [UInt64] = [0x1000_0000, 0x2000_0000]
    static let guestBase: [UInt64] = [0, 0x10000]
    static let iovaBase: UInt64 = 0x4000_0000
    static let features: VirtioFeatures = [.version1, .vhostUserProtocolFeatures, .accessPlatform, .ringPacked, .eventIndex,
                                           .indirectDescriptors, .inOrder]
    static let sizes: [UInt32] = [16, 1, 2, 4, 8, 64, 256, 0, 3, 100, 512]

    public static func run(_ data: UnsafeRawBufferPointer) {
        var input = FuzzInput(data)
        var steps: [Step] = []
        while !input.isExhausted && steps.count < 192 { steps.append(Step(&input)) }
        serve(steps)
    }

    /// One step of the hostile front-end's script.
    enum Step {
        case message(VhostUserMessage, file: Int?)   // file: 0, 1 (memfds), 2 (grant table), 3... (eventfds)
        case write(file: Int, offset: Int, bytes: [UInt8])
        case truncate(file: Int, size: Int)
        case kick(queue: Int)
        case pause(microseconds: Int)

        init(_ input: inout FuzzInput) {
            let op = input.byte()
            switch op % 16 {
            case 11: self = .write(file: Int(input.byte() % 3), offset: Int(input.integer(UInt16.self)), bytes: input.take(Int(input.byte() % 64)))
            case 12: self = .truncate(file: Int(input.byte() % 3), size: [0, 4096, 0x8000, fileSize, fileSize * 2][Int(input.byte() % 5)])
            case 13: self = .kick(queue: Int(input.byte() % 2))
            case 14: self = .pause(microseconds: Int(input.byte()) * 8)
            default: self = Self.message(op % 16, &input)
            }
        }

        static func region(_ input: inout FuzzInput) -> (VhostUserMemoryRegion, file: Int) {
            let file = Int(input.byte() % 2)
            let size = [UInt64(fileSize), 0x8000, 0x1000, UInt64(fileSize) * 4][Int(input.byte() % 4)]
            return (VhostUserMemoryRegion(guestAddress: guestBase[file], size: size, userAddress: userBase[file], mmapOffset: 0), file)
        }

        /// An address from one of the grids the modes use.
        static func address(_ input: inout FuzzInput) -> UInt64 {
            let page = UInt64(input.byte() % 16) * 0x1000, offset = UInt64(input.byte() % 4) * 0x100
            switch input.byte() % 4 {
            case 0: return guestBase[0] + page + offset
            case 1: return userBase[0] + page + offset
            case 2: return iovaBase + page + offset
            default: return GrantHandle(reference: GrantReference(UInt32(page >> 12)), offset: Int(offset)).rawValue
            }
        }

        static func message(_ op: UInt8, _ input: inout FuzzInput) -> Step {
            let queue = UInt32(input.byte() % 3)
            switch op {
            case 0:
                let (a, file) = region(&input)
                if input.bool() { return .message(.setMemoryTable(VhostUserMemoryTable(regions: [a])), file: file) }
                return .message(.addMemoryRegion(a), file: file)
            case 1:
                return .message(.removeMemoryRegion(region(&input).0), file: nil)
            case 2:
                return .message(.setFeatures(features.intersection(VirtioFeatures(rawValue: input.integer(UInt64.self) | 1 << 32 | 1 << 30))), file: nil)
            case 3:
                switch input.byte() % 4 {
                case 0: return .message(.setVringNum(VhostUserVringState(index: queue, num: sizes[Int(input.byte()) % sizes.count])), file: nil)
                case 1:
                    return .message(.setVringAddress(VhostUserVringAddress(index: queue, descriptor: address(&input), used: address(&input),
                                                                           available: address(&input), log: 0)), file: nil)
                case 2: return .message(.setVringBase(VhostUserVringState(index: queue, num: UInt32(input.integer(UInt16.self)))), file: nil)
                default: return .message(.setVringEnable(VhostUserVringState(index: queue, num: UInt32(input.byte() % 2))), file: nil)
                }
            case 4:
                let which = Int(input.byte() % 3), file = VhostUserVringFile(index: UInt8(queue))
                let message: VhostUserMessage = which == 0 ? .setVringKick(file) : which == 1 ? .setVringCall(file) : .setVringErr(file)
                return .message(message, file: 3 + Int(queue % 2) * 3 + which)
            case 5:
                return .message(.setStatus(DeviceStatus(rawValue: input.byte())), file: nil)
            case 6:
                let iova = iovaBase + UInt64(input.byte() % 16) * 0x1000
                let size = UInt64(input.byte() % 17) * 0x1000
                let user = userBase[Int(input.byte() % 2)] + UInt64(input.byte() % 16) * 0x1000
                let permission: VhostUserIOTLBPermission = [.readOnly, .writeOnly, .readWrite][Int(input.byte() % 3)]
                return .message(.iotlb(.update(iova: iova, size: max(size, 0x1000), userAddress: user, permission: permission)), file: nil)
            case 7:
                return .message(.iotlb(.invalidate(iova: iovaBase + UInt64(input.byte() % 16) * 0x1000, size: UInt64(input.byte() % 17) * 0x1000)), file: nil)
            case 8:
                let info = VhostUserGrantTable(granter: DomainID(1), grantee: DomainID(UInt16(input.byte() % 2)), tableSize: 0x1000,
                                               tableOffset: 0, framesGuestAddress: guestBase[Int(input.byte() % 2)], frameCount: UInt64(input.byte() % 20))
                return .message(.setGrantTable(info), file: 2)
            case 9:
                return .message(.revokeGrants(VhostUserGrantRange(first: GrantReference(UInt32(input.byte())), count: UInt32(input.byte()))), file: nil)
            case 15:
                let requests: [VhostUserMessage] = [.setOwner, .setProtocolFeatures(BackEndConfiguration.implementedProtocolFeatures), .getFeatures,
                                                    .getProtocolFeatures, .setBackEndRequestFD]
                let m = requests[Int(input.byte()) % requests.count]
                return .message(m, file: m == .setBackEndRequestFD ? 9 : nil)
            default:
                let requests: [VhostUserMessage] = [.getVringBase(VhostUserVringState(index: queue, num: 0)), .resetDevice, .resetOwner,
                                                    .getStatus, .getConfig(.request(offset: 0, size: 8)), .getQueueNum]
                return .message(requests[Int(input.byte()) % requests.count], file: nil)
            }
        }
    }

    /// The hostile session and the bystander, in this process.
    static func serve(_ steps: [Step]) {
        do {
            let tag = UInt64.random(in: 0...UInt64.max)
            let files = try (0..<3).map { try SharedMemory.createUnsealed(name: "fuzz-session-\($0)-\(tag)", size: $0 == 2 ? 4096 : fileSize) }
            let doorbells = try (0..<6).map { _ in try Doorbell() }
            let (backendOurs, backendTheirs) = try UnixSocket.pair()
            let (ours, theirs) = try UnixSocket.pair()
            var bystander = try Bystander(tag: tag)
            let identities = (files.map(\.fd) + doorbells.map(\.fd) + [backendOurs.fd, backendTheirs.fd, ours.fd, theirs.fd]
                              + [bystander.memory.fd, bystander.ours.fd, bystander.theirs.fd]).compactMap { fileIdentity(of: $0.rawValue) }
            let ended = Locked<SessionReport?>(nil)
            let device = KeepingChecksumDevice()
            let session = WorkerThread(name: "fuzz-hostile") {
                var configuration = BackEndConfiguration.silent
                // Stops meet kept requests and give up on them soon (GHT-ASY-04).
                configuration.inFlightDrainTimeoutMilliseconds = 20
                let report = BackEnd.serve(connection: theirs, device: device, configuration: configuration, id: 2)
                ended.withLock { $0 = report }
            }
            let drains = [ours, backendOurs].map { socket in
                WorkerThread(name: "fuzz-drain") {
                    var buffer = [UInt8](repeating: 0, count: 4096)
                    while (try? buffer.withUnsafeMutableBytes { try socket.receive(into: $0, maxFileDescriptors: 0).count }) ?? 0 > 0 {}
                }
            }
            let kicking = Atomic<Bool>(true)
            let kicker = WorkerThread(name: "fuzz-kicker") {
                while kicking.load(ordering: .relaxed) {
                    try? doorbells[0].signal()
                    try? doorbells[3].signal()
                    device.answerKept()
                    SystemClock.sleep(nanoseconds: 200_000)
                }
            }
            for step in steps {
                fuzzTrace("step \(step)")
                switch step {
                case .message(let message, let file):
                    guard let bytes = try? VhostUserCodec.encode(message, needReply: true) else { continue }
                    let fds: [Int32] = file.map { f in f < 3 ? [files[f].fd.rawValue] : f < 9 ? [doorbells[f - 3].fd.rawValue] : [backendTheirs.fd.rawValue] } ?? []
                    if (try? ours.send(bytes, fds: fds)) == nil { break }
                case .write(let file, let offset, let bytes):
                    // Through the file, never our own mapping: the file may have shrunk under it.
                    _ = try? files[file].fd.write(bytes, at: offset % files[file].size)
                case .truncate(let file, let size):
                    try? files[file].fd.truncate(to: size)
                case .kick(let queue):
                    try? doorbells[queue * 3].signal()
                case .pause(let microseconds):
                    SystemClock.sleep(nanoseconds: UInt64(microseconds) * 1000)
                }
            }
            fuzzTrace("script done")
            try? ours.shutdownWriting()
            session.join()
            fuzzTrace("hostile session ended")
            kicking.store(false, ordering: .relaxed)
            kicker.join()
            // Requests abandoned at the session's end hold its mappings until the device lets
            // them go (GHT-ASY-05); their completions are refused.
            device.answerKept()
            // Shut down, not closed: a close does not wake a thread blocked in recv.
            try? ours.shutdown()
            try? backendOurs.shutdown()
            for d in drains { d.join() }
            for socket in [ours, backendOurs, theirs, backendTheirs] { socket.close() }
            fuzzCheck(ended.withLock { $0?.end } != nil, "the hostile session did not end")
            fuzzTrace("finishing the bystander")
            bystander.finish()
            fuzzTrace("bystander finished")
            // Left open: what this function still holds (three files, six doorbells, the
            // bystander's memory), once each; every descriptor the sessions received is closed.
            let open = ((try? openFileIdentities()) ?? []).filter { identities.contains($0) }
            fuzzCheck(identities.count < 17 || open.count == 10, "descriptors leaked: \(open.count) of ours open, 10 expected")
        } catch {
            return   // out of descriptors or memory: not the session's doing
        }
    }

    /// A well-behaved front-end in the same process: its memory must hold exactly what it wrote,
    /// and its session must still answer, whatever the hostile session did.
    struct Bystander {
        let memory: SharedMemory
        let ours: UnixSocket, theirs: UnixSocket
        let session: WorkerThread
        static let pattern: UInt8 = 0xA5

        init(tag: UInt64) throws {
            memory = try SharedMemory.create(name: "fuzz-bystander-\(tag)", size: SessionTarget.fileSize)
            memory.range.fill(with: Self.pattern)
            (ours, theirs) = try UnixSocket.pair()
            try ours.setReceiveTimeout(milliseconds: 5000)
            let theirs = self.theirs
            session = WorkerThread(name: "fuzz-bystander") {
                _ = BackEnd.serve(connection: theirs, device: ChecksumEchoDevice(queueCount: 2, maxQueueSize: 256), configuration: .silent, id: 1)
            }
            let region = VhostUserMemoryRegion(guestAddress: 0, size: UInt64(memory.size), userAddress: 0x7000_0000, mmapOffset: 0)
            for (message, fds) in [(VhostUserMessage.setOwner, []), (.setMemoryTable(VhostUserMemoryTable(regions: [region])), [memory.fd.rawValue])] {
                try ours.send(try VhostUserCodec.encode(message, needReply: false), fds: fds)
            }
        }

        mutating func finish() {
            let intact = memory.range.withUnsafeBytes { $0.allSatisfy { $0 == Self.pattern } }
            fuzzCheck(intact, "the bystander's memory changed")
            let answered = (try? ours.send(try VhostUserCodec.encode(.getFeatures, needReply: false))) != nil
                && (try? VhostUserChannel(socket: ours).receive()) != nil
            fuzzCheck(answered, "the bystander's session no longer answers")
            try? ours.shutdownWriting()
            session.join()
            ours.close()
            theirs.close()
        }
    }
}

extension FuzzSeeds {
    /// Sessions that reach a running queue in each translation mode, then pull memory away:
    /// guest-physical (then the ring file truncated), IOVA (then the whole space invalidated and
    /// the memory table swapped), and grant handles (then the grant table truncated).
    static func session() -> [[UInt8]] {
        let negotiate: [UInt8] = [15, 0, 1, 15, 0, 0, 15, 0, 4, 0, 0, 0, 0, 1]
        let statuses: [UInt8] = [5, 0, 1, 5, 0, 3, 5, 0, 11]
        func features(_ bits: UInt64) -> [UInt8] { [2, 0] + le(bits) }
        func ring(_ mode: UInt8) -> [UInt8] {
            [3, 0, 0, 0] + [3, 0, 1, 0, 0, mode, 0, 2, mode, 0, 1, mode] + [3, 0, 2] + le(UInt16(0)) + [4, 0, 0, 4, 0, 1, 4, 0, 2]
        }
        func write(_ file: UInt8, _ offset: Int, _ bytes: [UInt8]) -> [UInt8] { [11, file] + le(UInt16(offset)) + [UInt8(bytes.count)] + bytes }
        func chain(_ readable: UInt64, _ writable: UInt64) -> [UInt8] {
            write(0, 0, le(readable) + le(UInt32(16)) + le(UInt16(1)) + le(UInt16(1)) + le(writable) + le(UInt32(64)) + le(UInt16(2)) + le(UInt16(0)))
                + write(0, 0x100, le(UInt16(0)) + le(UInt16(1)) + le(UInt16(0))) + write(0, 0x1000, Array("sixteen bytes!!!".utf8))
        }
        let run: [UInt8] = [3, 0, 3, 1, 5, 0, 15, 13, 0, 14, 40]
        let physical = negotiate + features(0) + statuses + ring(1) + chain(0x1000, 0x1100) + run + [12, 0, 0, 13, 0, 14, 40]
        let handle = { (ref: UInt32, offset: Int) in GrantHandle(reference: GrantReference(ref), offset: offset).rawValue }
        let iova = negotiate + features(1 << 33) + statuses + [6, 0, 0, 16, 0, 0, 2] + ring(2) + chain(0x4000_1000, 0x4000_1100) + run
            + [7, 0, 0, 0, 13, 0, 14, 40, 0, 0, 1, 0, 1, 13, 0, 14, 40]
        let grantEntries = (0..<16).flatMap { le(UInt16(1)) + le(UInt16(0)) + le(UInt32($0)) }
        let grants = negotiate + features(1 << 33) + [8, 0, 0, 0, 16] + write(2, 0, Array(grantEntries.prefix(63))) + write(2, 63, Array(grantEntries.dropFirst(63)))
            + statuses + ring(3) + chain(handle(1, 0), handle(1, 0x100)) + run + [12, 2, 0, 13, 0, 14, 40]
        return [physical, iova, grants]
    }
}

extension BackEndConfiguration {
    /// The back-end's defaults without its log: a fuzzer runs thousands of sessions a second.
    static var silent: BackEndConfiguration {
        var c = BackEndConfiguration()
        c.logSink = nil
        return c
    }
}
