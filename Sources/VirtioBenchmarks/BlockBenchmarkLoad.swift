import Synchronization
import VirtioCore
import VirtioDevices
import VirtioSystem
import VirtioTransport

/// The `p`-th percentile (0...100) of `sorted` by the nearest-rank method: the smallest value
/// with at least `p` percent of the values at or below it; nil when empty.
func percentile(_ sorted: [UInt64], _ p: Double) -> UInt64? {
    guard !sorted.isEmpty else { return nil }
    let rank = Int((p / 100 * Double(sorted.count)).rounded(.up))
    return sorted[min(max(rank, 1), sorted.count) - 1]
}

/// Where a load run is: warming up (nothing recorded), measuring, or ending; set by the
/// coordinating thread, read by each queue's thread once per burst.
final class LoadPhase: Sendable {
    static let warmUp = 0, measure = 1, stop = 2
    let value = Atomic<Int>(LoadPhase.warmUp)

    func set(_ phase: Int) { value.store(phase, ordering: .relaxed) }
    var current: Int { value.load(ordering: .relaxed) }
}

/// One queue's share of a load point: a thread that keeps `depth` 4 KiB requests in flight on
/// its queue, at random 4 KiB-aligned offsets of the disk, and records each round trip.
///
/// Round trips are timed per batch, not per request (one clock read per submission burst and
/// one per completion burst): a request's latency is from the burst that submitted it to the
/// burst that reaped it.
final class QueueLoad: @unchecked Sendable {
    let queue: FrontEndQueue
    let operation: BlockBenchmark.Operation
    let client: BlockBenchmark.Client
    let depth: Int
    let blocks: UInt64
    let phase: LoadPhase
    /// Requests completed, counted in every phase (the coordinator samples it at the edges).
    let completed = Atomic<Int>(0)
    /// Latencies in nanoseconds, measured phase only; read after the thread ended.
    private(set) var latencies: [UInt64] = []
    /// Completions with a status other than OK, a short reply, or a front-end error.
    private(set) var errors = 0
    private(set) var failure: String?

    private var random: UInt64
    private let request: UnsafeMutableRawBufferPointer
    /// Per token (modulo the ring's size): when its burst was submitted, and the token, so a
    /// slot reused by another token is never mistaken for it.
    private let submittedAt: UnsafeMutablePointer<(token: UInt64, time: UInt64)>
    private static let trackedTokens = 1 << 14

    init(queue: FrontEndQueue, operation: BlockBenchmark.Operation, client: BlockBenchmark.Client, depth: Int,
         blocks: UInt64, phase: LoadPhase, seed: UInt64) {
        self.queue = queue
        self.operation = operation
        self.client = client
        self.depth = depth
        self.blocks = blocks
        self.phase = phase
        random = seed | 1
        request = .allocate(byteCount: BlockRequestHeader.byteCount + BlockBenchmark.blockBytes, alignment: 64)
        // A write's payload: any bytes will do (the verification phase checks contents).
        for i in 0..<request.count { request[i] = UInt8(truncatingIfNeeded: i &* 31 &+ 7) }
        submittedAt = .allocate(capacity: Self.trackedTokens)
        submittedAt.initialize(repeating: (0, 0), count: Self.trackedTokens)
        latencies.reserveCapacity(1 << 20)
    }

    deinit {
        request.deallocate()
        submittedAt.deallocate()
    }

    /// xorshift64: a block index, uniform enough for a load generator.
    private func nextBlock() -> UInt64 {
        random ^= random << 13
        random ^= random >> 7
        random ^= random << 17
        return random % blocks
    }

    /// Runs until the phase says stop, then waits for what is still in flight.
    func run() {
        var inFlight = 0
        let write = operation == .randwrite
        let requestBytes = BlockRequestHeader.byteCount + (write ? BlockBenchmark.blockBytes : 0)
        let replyBytes = (write ? 0 : BlockBenchmark.blockBytes) + 1
        request.storeBytes(of: (write ? BlockRequestType.write : .read).rawValue.littleEndian, toByteOffset: 0, as: UInt32.self)
        request.storeBytes(of: UInt32(0), toByteOffset: 4, as: UInt32.self)
        let mask = UInt64(Self.trackedTokens - 1)
        var stopping = false
        var drainDeadline: UInt64 = 0
        do throws(FrontEndError) {
            while !stopping || inFlight > 0 {
                if !stopping && phase.current == LoadPhase.stop {
                    stopping = true
                    drainDeadline = SystemClock.monotonic.nanoseconds + 5_000_000_000
                } else if stopping && SystemClock.monotonic.nanoseconds > drainDeadline {
                    // A back-end that never completes must not hold a polling client forever.
                    throw .timedOut("\(inFlight) requests still in flight 5 s after the run ended")
                }
                if !stopping && inFlight < depth {
                    let now = SystemClock.monotonic.nanoseconds
                    while inFlight < depth {
                        let sector = nextBlock() * UInt64(BlockBenchmark.blockBytes / BlockRequestHeader.sectorSize)
                        request.storeBytes(of: sector.littleEndian, toByteOffset: 8, as: UInt64.self)
                        let token = try queue.submit(copying: UnsafeRawBufferPointer(rebasing: request[0..<requestBytes]), replyCapacity: replyBytes)
                        submittedAt[Int(token & mask)] = (token, now)
                        inFlight += 1
                    }
                    try queue.publish()
                }
                if inFlight == 0 { break }   // stopping, and nothing left to wait for
                let measuring = phase.current == LoadPhase.measure
                var reapedAt: UInt64 = 0
                let n = try reap { token, reply in
                    if reapedAt == 0 { reapedAt = SystemClock.monotonic.nanoseconds }
                    if reply.count != replyBytes || reply[reply.count - 1] != BlockStatus.ok.rawValue { errors += 1 }
                    let entry = submittedAt[Int(token & mask)]
                    if measuring && entry.token == token { latencies.append(reapedAt &- entry.time) }
                }
                inFlight -= n
                completed.add(n, ordering: .relaxed)
            }
        } catch {
            failure = "queue \(queue.index): \(error)"
            errors += 1
        }
    }

    /// One round of the client: the sleeping client waits on the call eventfd (the front-end
    /// re-enables used-buffer notifications before it sleeps); the polling client never sleeps
    /// and keeps used-buffer notifications off, looking at the used ring again at once.
    private func reap(_ body: (UInt64, UnsafeRawBufferPointer) -> Void) throws(FrontEndError) -> Int {
        switch client {
        case .sleep:
            return try queue.waitForCompletions(timeoutMilliseconds: 5000, body)
        case .poll:
            return try queue.pollCompletions(body)
        }
    }
}
