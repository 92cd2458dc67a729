import VirtioCore
import VirtioGrants
import VirtioSystem
import VhostUser

/// How a back-end serves its front-ends.
public struct BackEndConfiguration: Sendable {
    /// The back-end's domain: the grantee named in grant entries it may map.
    public var domain = DomainID(0)
    /// Memory regions a front-end may register (GET_MAX_MEM_SLOTS).
    public var maxMemorySlots = 32
    /// Entries of each queue's grant IOTLB. A front-end with persistent grants keeps a few
    /// pages per in-flight request granted (a queue of 256 with 4 KiB requests and replies:
    /// about 800); a cache four times that size holds them with no conflict misses.
    public var iotlbEntries = 4096
    /// Evicted grant mappings each queue's IOTLB may keep for chains in flight until the batch's
    /// quiescent point (GHT-DMA-03, GHT-DMA-04): a batch ends early at half of it; a single
    /// chain that needs more breaks its queue.
    public var iotlbParkedEntries = 4096
    /// The most entries a front-end's grant table may have (SET_GRANT_TABLE, GHT-LIM-20):
    /// 2^20 references reach 4 GiB of granted pages at once.
    public var maxGrantEntries = 1 << 20
    /// Chains per batch handed to the device.
    public var batchLimit = 64
    /// How the queue workers wait for work (GHT-ASY-08): sleeping on the kick (the default), or
    /// polling the rings.
    public var execution = QueueExecution.sleeping
    /// Threads shared by the queues of every session of this configuration (GHT-ASY-10); `nil`
    /// (the default): a thread per started queue, polling or sleeping as ``execution`` says.
    public var queueThreads: QueueThreadPool?
    /// CPUs a queue's own thread is pinned to, queue k to `workerCPUs[k % count]`; empty (the
    /// default): not pinned. A pool pins its threads itself.
    public var workerCPUs: [Int] = []
    /// How long stopping a queue (GET_VRING_BASE, reset, the session's end) waits for requests
    /// the device kept (GHT-ASY-04); those still outstanding then are abandoned: their
    /// completions are ignored, their memory stays mapped until the device lets them go.
    public var inFlightDrainTimeoutMilliseconds = 5_000
    /// How long REVOKE_GRANTS waits for the queues to drop their mappings before answering failure.
    public var revokeTimeoutMilliseconds = 2000
    /// Where the back-end logs what an operator needs (GHT-EMB-05..08): sessions opened,
    /// refused and ended, queues started, held back and broken, faults. By default, lines on
    /// standard error with a timestamp; nil: silent.
    public var logSink: (any LogSink)? = StandardErrorLogSink()
    /// The least severe level logged; `.info` by default. Below it a record's text is never built.
    public var logLevel: LogLevel = .info
    /// Called on the session's thread with its final report when a session ends.
    public var onSessionEnd: (@Sendable (SessionReport) -> Void)?

    // MARK: Connections, threads and liveness (Spec/limits.md §3, Spec/hostile-peers.md §3)

    /// Connections served at once; one beyond it is closed at once and logged (GHT-LIM-40).
    public var maxConnections = 256
    /// How long a new connection may take to send SET_OWNER; nil: no bound (GHT-LIM-42).
    public var setupTimeoutMilliseconds: Int32? = 10_000
    /// How long an owned connection may take to start its first queue; nil (the default): no
    /// bound, since a guest may load its driver long after the front-end connects (GHT-LIM-42).
    public var queueStartTimeoutMilliseconds: Int32?
    /// How long the rest of a message may take once its first byte arrived (GHT-LIM-43).
    public var messageTimeoutMilliseconds: Int32 = 5_000
    /// How long a reply on the connection may take to go out (the front-end not reading);
    /// the session then ends (GHT-LIVE-02).
    public var replyTimeoutMilliseconds: Int32 = 5_000
    /// Reports of ended sessions kept for ``BackEnd/reports`` (the most recent; GHT-LIM-44).
    public var keptReports = 128
    /// The longest pause of the accept loop when the process or system is out of descriptors
    /// or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM); pauses double from 10 ms up to it (GHT-LIVE-04).
    public var acceptBackoffMaxMilliseconds = 1000
    /// How threads are started (a test seam: a failing creation is refused, never fatal).
    var startThread: @Sendable (String, @escaping @Sendable () -> Void) throws(SystemError) -> WorkerThread = { name, body throws(SystemError) in
        try WorkerThread.start(name: name, body)
    }

    // MARK: What the sessions offer (Spec/vhost-user.md §6)

    /// The transport feature bits offered besides the device's own: by default every one the
    /// transport implements (packed ring, event index, indirect descriptors, ACCESS_PLATFORM...).
    /// Clearing one stops offering it (a device that must not be driven with packed rings); a
    /// bit the transport does not implement is never offered (GHT-EMB-02).
    public var transportFeatures: VirtioFeatures = Self.implementedTransportFeatures
    /// The vhost-user protocol features offered; nil (the default): every one the session
    /// implements that applies to the device (GHT-EMB-01). A set given here is offered only as
    /// far as it is implemented and applies: CONFIG never to a device without a configuration
    /// space (GHT-EMB-02).
    public var protocolFeatures: VhostUserProtocolFeatures?
    /// Whether sessions offer INFLIGHT_SHMFD (GET/SET_INFLIGHT_FD): the queues track their
    /// requests in flight in a shared area the front-end keeps, so that a restarted back-end
    /// resubmits them (Spec/restart.md §1). On by default for every device.
    public var tracksInflightRequests = true

    public init() {}

    /// The transport features a session can serve.
    public static let implementedTransportFeatures: VirtioFeatures = .implementedTransport

    /// The vhost-user protocol features a session implements.
    public static let implementedProtocolFeatures: VhostUserProtocolFeatures = [.multiQueue, .replyAck, .backendRequest, .config, .status,
                                                                                .configureMemorySlots, .grantTable, .resetDevice,
                                                                                .inflightSharedMemory]

    /// The protocol features a session offers to the front-end of `device` (GHT-EMB-01,
    /// GHT-EMB-02): ``protocolFeatures`` (or all) of those implemented that apply to it. CONFIG
    /// applies only to a device with a configuration space: QEMU 7.2 warns on every start of a
    /// device that has none and is offered it (vhost-user-rng: "vhost-user backend supports
    /// VHOST_USER_PROTOCOL_F_CONFIG but QEMU does not").
    public func offeredProtocolFeatures(for device: any VirtioDevice) -> VhostUserProtocolFeatures {
        var applicable = Self.implementedProtocolFeatures
        if device.configurationSize == 0 { applicable.remove(.config) }
        if !tracksInflightRequests { applicable.remove(.inflightSharedMemory) }
        return (protocolFeatures ?? applicable).intersection(applicable)
    }

    /// The transport features a session offers (GHT-EMB-02): ``transportFeatures`` as far as implemented.
    public var offeredTransportFeatures: VirtioFeatures { transportFeatures.intersection(Self.implementedTransportFeatures) }
}

/// Why a session ended.
public enum SessionEnd: Sendable, Equatable, CustomStringConvertible {
    /// The front-end closed the connection.
    case disconnected
    /// The front-end broke the protocol; the back-end closed the connection (GHT-VU-21).
    case violation(String)
    /// The front-end took longer than a bound of ``BackEndConfiguration`` (set-up, a message,
    /// a reply it did not read); the back-end closed the connection (GHT-LIM-42, GHT-LIM-43).
    case timedOut(String)
    /// The back-end could not give the session what it needs (a thread); the connection was
    /// closed (GHT-LIM-41).
    case refused(String)

    public var description: String {
        switch self {
        case .disconnected: return "disconnected"
        case .violation(let reason): return "closed: \(reason)"
        case .timedOut(let reason): return "timed out: \(reason)"
        case .refused(let reason): return "refused: \(reason)"
        }
    }
}

/// What a session did, for reports.
public struct SessionReport: Sendable, CustomStringConvertible {
    public var id: Int
    /// The front-end's domain, once it set a grant table.
    public var granter: DomainID?
    public var end: SessionEnd?
    public var chains: UInt64 = 0
    public var notifications: UInt64 = 0
    public var kicks: UInt64 = 0
    /// CPU time of the queue worker threads.
    public var workerCPUSeconds = 0.0
    public var iotlbHits: UInt64 = 0
    public var iotlbMisses: UInt64 = 0
    /// Translation faults, by kind.
    public var faults: [TranslationFault.Kind: UInt64] = [:]
    /// Queues that broke, with the error.
    public var brokenQueues: [Int: VirtqueueError] = [:]
    /// Whether the front-end shrank a shared file under the back-end's mapping (GHT-LIFE-03).
    public var memoryLost = false
    /// Messages for the back-end channel not sent because the front-end did not read it; the
    /// channel is closed at the first (GHT-LIVE-01).
    public var backendMessagesDropped: UInt64 = 0

    public var iotlbHitRate: Double { iotlbHits + iotlbMisses == 0 ? 0 : Double(iotlbHits) / Double(iotlbHits + iotlbMisses) }

    public var description: String {
        "session \(id)\(granter.map { " (\($0))" } ?? ""): \(chains) chains, \(kicks) kicks, \(notifications) notifications, "
            + "IOTLB \(iotlbHits) hits \(iotlbMisses) misses, faults \(faults), broken \(brokenQueues.keys.sorted())"
            + (end.map { ", \($0)" } ?? "")
    }
}
