import Synchronization
import VirtioCore
import VirtioGrants
import VirtioSystem
import VhostUser

/// One front-end connection: the vhost-user back-end state machine (QEMU
/// docs/interop/vhost-user.rst, Spec/vhost-user.md) serving one device.
///
/// The session thread reads messages one at a time and changes state; each started queue has
/// its own worker thread. Any malformed message, or a request that is illegal in the current
/// state, ends the session: the connection is closed, the queues are stopped, every region is
/// unmapped and every descriptor closed, and the device is reset (GHT-VU-21). The process
/// keeps serving other connections.
final class BackEndSession: @unchecked Sendable {
    let id: Int
    let channel: VhostUserChannel
    let device: any VirtioDevice
    let configuration: BackEndConfiguration
    let status = DeviceStatusCell()
    let iovaSpace = IOVASpace()

    var owned = false
    var offeredFeatures: VirtioFeatures
    var ackedFeatures: VirtioFeatures?
    var protocolFeatures: VhostUserProtocolFeatures = []
    /// The protocol features offered to this front-end (GHT-EMB-01).
    let offeredProtocolFeatures: VhostUserProtocolFeatures
    /// Where this session logs (GHT-EMB-05).
    let logger: BackEndLogger
    var regions: [MappedMemoryRegion] = []
    var vrings: [Vring]
    var grants: GrantState?
    /// The in-flight area (GET/SET_INFLIGHT_FD, Spec/restart.md §1).
    var inflight: InflightArea?
    let backendChannel = Locked<UnixSocket?>(nil)
    /// Every mapping of the front-end's files the session holds (regions, grant table), for the
    /// queue workers' truncation check (GHT-LIFE-03); kept by the session thread.
    let peerMemory = Locked<[any TruncationGuarded]>([])
    let report: Locked<SessionReport>
    /// When the connection was accepted, in ``SystemClock/monotonic`` nanoseconds (set-up
    /// bounds count from here).
    let connectedAt = SystemClock.monotonic.nanoseconds
    /// Whether a queue of this session was ever started (GHT-LIM-42).
    var queueEverStarted = false
    /// Why the session ends, when another thread or a timed-out reply decided it.
    let forcedEnd = Locked<SessionEnd?>(nil)

    /// A queue's configuration and, once started, its worker and the objects its translator needs.
    struct Vring {
        var size: Int?
        var address: VhostUserVringAddress?
        /// SET_VRING_BASE as received (split: 16 bits; packed: both positions, GHT-PKD-08).
        var base: UInt32 = 0
        var kick: Doorbell?
        var call: Doorbell?
        var err: Doorbell?
        var enabled = false
        /// Why the queue was last logged as held back (logged once per reason, GHT-VU-24).
        var heldBack: String?
        /// Stopped to take a new kick, call or err descriptor: its next start is a restart.
        var restarting = false
        var worker: QueueWorker?
        var keepAlive: [AnyObject] = []
        var iotlb: GrantIOTLB?
        var iovaCache: IOVACache?
        /// IOVA mode: the ring areas as IOVAs, translated once at start (GHT-LIFE-02).
        var iovaRingAreas: [(start: UInt64, size: Int, access: MemoryAccess, host: UInt)] = []
    }

    /// The front-end's grant table, mapped.
    struct GrantState {
        let info: VhostUserGrantTable
        let table: SharedMemory
        let mapper: GrantMapper
        /// The region the frames live in, kept mapped as long as the mapper may use it.
        let frames: SharedMemory
        /// The table and every mapping of the frames, for the truncation check (GHT-LIFE-03).
        let guarded: [any TruncationGuarded]
    }

    /// An illegal request in the current state, or a resource the session cannot use.
    struct Violation: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }

    init(id: Int, socket: UnixSocket, device: any VirtioDevice, configuration: BackEndConfiguration) {
        self.id = id
        channel = VhostUserChannel(socket: socket)
        self.device = device
        self.configuration = configuration
        // FEAT-DEV-01: a device-type feature whose prerequisites the device does not offer is not offered.
        offeredFeatures = device.deviceFeatures.intersection(.deviceTypeBits).closure(requirements: device.featureRequirements)
            .union(configuration.offeredTransportFeatures).union(.vhostUserProtocolFeatures)
        offeredProtocolFeatures = configuration.offeredProtocolFeatures(for: device)
        logger = BackEndLogger(configuration, session: id)
        vrings = Array(repeating: Vring(), count: device.queueCount)
        report = Locked(SessionReport(id: id))
    }

    /// Logs `message` about this session at `level` (GHT-EMB-05); not built when not written.
    func log(_ level: LogLevel, _ event: LogEvent, _ message: @autoclosure () -> String) {
        logger(level, event, message())
    }

    /// Serves the connection until the front-end closes it, breaks the protocol or exceeds a
    /// bound (set-up, a message, a reply: GHT-LIM-42, GHT-LIM-43, GHT-LIVE-02).
    func run() -> SessionEnd {
        let end: SessionEnd
        loop: while true {
            let received: VhostUserChannel.Received
            do {
                received = try channel.receive(deadline: pendingSetupDeadline?.deadline,
                                               messageTimeoutMilliseconds: configuration.messageTimeoutMilliseconds)
            } catch {
                switch error {
                case .closed: end = .disconnected
                case .protocolViolation(let e): end = .violation("\(e)")
                case .socket(let e): end = .violation("socket: \(e)")
                case .timedOut(midMessage: true):
                    end = .timedOut("a message not completed within \(configuration.messageTimeoutMilliseconds) ms")
                case .timedOut(midMessage: false):
                    end = .timedOut(pendingSetupDeadline?.what ?? "set-up not completed in time")
                }
                break loop
            }
            do {
                let message = try VhostUserCodec.decode(received.frame)
                try handle(message, header: received.frame.header, fds: received.fds)
            } catch let error as VhostUserProtocolError {
                end = .violation("\(error)")
                break loop
            } catch {
                end = .violation("\(error)")
                break loop
            }
        }
        // An end forced from another thread (a doorbell that hung up) shut the socket down; it
        // is the reason, not the end of stream that followed.
        let reason = forcedEnd.withLock { $0 } ?? end
        // Teardown stops every queue first and folds its translator's counters into the report
        // (the counters are the worker's own, read only once it stopped).
        teardown()
        let faults = report.withLock { $0.faults }
        report.withLock { $0.end = reason }
        logEnd(reason, faults: faults)
        return reason
    }

    /// GHT-EMB-06, GHT-EMB-08: the end of a session is logged with its reason, at info when the
    /// front-end closed the connection and at warning when the back-end closed it; translation
    /// faults the session's queues met are logged at warning, lost memory at error.
    private func logEnd(_ reason: SessionEnd, faults: [TranslationFault.Kind: UInt64]) {
        if !faults.isEmpty {
            let counts = faults.sorted { $0.key.rawValue < $1.key.rawValue }.map { "\($0.key) \($0.value)" }
            log(.warning, .fault, "translation faults: \(counts.joined(separator: ", "))")
        }
        if report.withLock({ $0.memoryLost }) {
            log(.error, .fault, "the front-end shrank shared memory under the back-end's mapping (GHT-LIFE-03)")
        }
        if case .disconnected = reason {
            log(.info, .sessionEnded, "ended: \(reason)")
        } else {
            log(.warning, .sessionEnded, "ended: \(reason)")
        }
    }

    /// The set-up milestone the connection has not reached yet, with its deadline: SET_OWNER,
    /// then (when bounded) a started queue (GHT-LIM-42).
    private var pendingSetupDeadline: (deadline: Timeout, what: String)? {
        if !owned, let ms = configuration.setupTimeoutMilliseconds {
            return (Timeout(milliseconds: ms, after: connectedAt), "no SET_OWNER within \(ms) ms")
        }
        if !queueEverStarted, let ms = configuration.queueStartTimeoutMilliseconds {
            return (Timeout(milliseconds: ms, after: connectedAt), "no queue started within \(ms) ms")
        }
        return nil
    }

    /// Ends the session from another thread: records `reason` and shuts the connection down,
    /// which wakes the session thread.
    func end(_ reason: SessionEnd) {
        forcedEnd.withLock { if $0 == nil { $0 = reason } }
        try? channel.socket.shutdown()
    }

    /// Runs the session to its end and reports it (``BackEndConfiguration/onSessionEnd``).
    func serve() -> SessionReport {
        _ = run()
        let report = currentReport
        configuration.onSessionEnd?(report)
        return report
    }

    /// Stops every queue, unmaps every region and the grant table, closes every descriptor
    /// and resets the device.
    func teardown() {
        stopAllQueues(resetConfiguration: true)
        grants = nil
        regions.removeAll()
        backendChannel.withLock { $0?.close(); $0 = nil }
        channel.socket.close()
        device.reset()
        status.store([])
    }

    /// A snapshot of the session's counters.
    var currentReport: SessionReport {
        var r = report.withLock { $0 }
        r.chains = 0
        r.notifications = 0
        r.kicks = 0
        r.workerCPUSeconds = 0
        r.iotlbHits = 0
        r.iotlbMisses = 0
        r.faults = [:]
        for v in vrings {
            if let s = v.worker?.statistics {
                r.chains += s.chainCount
                r.notifications += s.notificationCount
                r.kicks += s.kickCount
                r.workerCPUSeconds += s.cpuSeconds
            }
            if let t = v.iotlb?.statistics {
                r.iotlbHits += t.hits
                r.iotlbMisses += t.misses
                for (k, n) in t.faults { r.faults[k, default: 0] += n }
            }
        }
        let finished = report.withLock { $0 }
        r.chains += finished.chains
        r.notifications += finished.notifications
        r.kicks += finished.kicks
        r.workerCPUSeconds += finished.workerCPUSeconds
        r.iotlbHits += finished.iotlbHits
        r.iotlbMisses += finished.iotlbMisses
        for (k, n) in finished.faults { r.faults[k, default: 0] += n }
        return r
    }

    /// Sends `reply`, within ``BackEndConfiguration/replyTimeoutMilliseconds`` (GHT-LIVE-02): a
    /// front-end that does not read its replies ends the session instead of holding its thread.
    func send(_ reply: VhostUserReply, fds: [Int32] = []) throws {
        do {
            try channel.send(try VhostUserCodec.encodeReply(reply), fds: fds, timeoutMilliseconds: configuration.replyTimeoutMilliseconds)
        } catch let error as SystemError where error.isTimedOut {
            forcedEnd.withLock { if $0 == nil { $0 = .timedOut("a reply not read within \(configuration.replyTimeoutMilliseconds) ms") } }
            throw error
        }
    }

    /// Sends a request on the back-end channel without waiting (GHT-LIVE-01). The queue
    /// workers call this: a front-end that does not read the channel must not hold them, so a
    /// message that does not fit in the socket buffer at once is dropped, counted, and the
    /// channel closed (part of it may be out, and the front-end is not listening anyway). The
    /// lock only orders the senders; no one waits for the peer while holding it.
    func sendOnBackEndChannel(_ messages: [[UInt8]]) {
        guard !messages.isEmpty else { return }
        var dropped = 0
        backendChannel.withLock { channel in
            for (n, bytes) in messages.enumerated() {
                guard let socket = channel else {
                    dropped += messages.count - n
                    return
                }
                do {
                    try socket.send(bytes, timeoutMilliseconds: 0)
                } catch {
                    socket.close()
                    channel = nil
                    dropped += messages.count - n
                    return
                }
            }
        }
        if dropped > 0 {
            report.withLock { $0.backendMessagesDropped += UInt64(dropped) }
            log(.warning, .control, "back-end channel not read: \(dropped) message(s) dropped, channel closed")
        }
    }

    /// Answers a request that does not always reply: an ack when REPLY_ACK is negotiated and the
    /// front-end asked for one.
    func acknowledge(_ header: VhostUserHeader, _ ack: VhostUserAck = .success) throws {
        guard header.needsReply, protocolFeatures.contains(.replyAck),
              let request = VhostUserRequest(rawValue: header.request) else { return }
        try send(.ack(request, ack))
    }
}
