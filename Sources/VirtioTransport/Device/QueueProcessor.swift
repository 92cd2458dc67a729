import VirtioCore
import VirtioSystem

/// One queue of a session, driven from its worker thread: pops a batch of chains, resolves each
/// through the queue's translator, hands the batch to the device, adds the used entries,
/// publishes once and decides on the used-buffer notification (event index).
///
/// Transport-independent and ring-format-independent (split or packed, through
/// ``DeviceQueue``): the thread that waits on the kick doorbell calls ``runBatch(limit:)`` and
/// signals the call doorbell when it returns `notify`.
public struct QueueProcessor<Queue: DeviceQueue & ~Copyable>: ~Copyable {
    public private(set) var queue: Queue
    public let index: Int
    let device: any VirtioDevice
    private var resolver = ChainResolver()
    private var chains: [DescriptorChain] = []
    private var requests: [(readable: Range<Int>, writable: Range<Int>)] = []
    /// Called after each batch, completed or abandoned, when no chain of this queue is in
    /// flight: grant mappings evicted during the batch and revoked grants are released there.
    let quiescentPoint: (() -> Void)?
    /// Whether any memory this queue reaches lost pages to a peer's truncation (GHT-LIFE-03);
    /// asked only when ``TruncationGuard/epoch`` moved, so a batch pays one atomic load.
    let isMemoryPoisoned: (() -> Bool)?
    /// The epoch last checked; none at first, so the first batch checks (a truncation met while
    /// the queue was being set up, before this processor existed, counts too).
    private var guardEpoch = UInt64.max
    /// Whether the last batch stopped at a chain naming an address that is not mapped yet:
    /// draining stops until the next call (a mapping arrived, or the driver kicked).
    public private(set) var isWaitingForMapping = false
    /// Whether the last batch found the device unable to use another buffer
    /// (``VirtioDevice/readyBuffers(queue:)`` was 0): draining stops until its doorbell rings.
    public private(set) var isPacedByDevice = false
    /// Chains processed since creation.
    public private(set) var processed = 0
    /// Batches handed to the device since creation.
    public private(set) var batches = 0

    public init(queue: consuming Queue, index: Int, device: any VirtioDevice, quiescentPoint: (() -> Void)? = nil,
                isMemoryPoisoned: (() -> Bool)? = nil) {
        self.queue = queue
        self.index = index
        self.device = device
        self.quiescentPoint = quiescentPoint
        self.isMemoryPoisoned = isMemoryPoisoned
    }

    /// GHT-LIFE-03: a batch that met memory the peer truncated is not completed; the queue breaks.
    private mutating func checkMemory() throws(VirtqueueError) {
        guard let isMemoryPoisoned else { return }
        let epoch = TruncationGuard.epoch
        guard _slowPath(epoch != guardEpoch) else { return }
        guardEpoch = epoch
        if isMemoryPoisoned() {
            throw queue.fail(.memoryFault(TranslationFault(.memoryLost, address: 0, length: 0, access: .read)))
        }
    }

    /// Processes up to `limit` available chains as one batch.
    ///
    /// - Returns: how many chains were processed and whether the driver wants a used-buffer
    ///   notification for them.
    /// - Throws: the violation that broke the queue (GHT-BRK-01); the device is not called for
    ///   a chain that could not be resolved (GHT-BRK-04).
    public mutating func runBatch(limit: Int = 64) throws(VirtqueueError) -> (processed: Int, notify: Bool) {
        // GHT-DMA-01, GHT-DMA-02: the batch's chains are completed, given back or abandoned
        // (the device returned): none is in flight, whatever the outcome.
        defer { quiescentPoint?() }
        resolver.removeAll()
        chains.removeAll(keepingCapacity: true)
        requests.removeAll(keepingCapacity: true)
        var limit = limit
        if let ready = device.readyBuffers(queue: index), ready < limit {
            limit = ready
            isPacedByDevice = ready == 0
        }
        // GHT-DMA-03: the batch also ends where the translator holds too many mappings for
        // the chains in flight; the quiescent point releases them and the next batch goes on.
        while chains.count < limit, !queue.memory.wantsQuiescentPoint, let chain = try queue.popAvailable() {
            do {
                requests.append(try resolver.resolve(chain, through: queue.memory))
            } catch {
                guard case .memoryFault(let fault) = error else { throw queue.fail(error) }
                // GHT-IOVA-06: a buffer the front-end has not mapped yet is not a violation.
                // The chain goes back; the batch so far is processed; the queue waits for
                // the mapping (the miss is reported at the quiescent point).
                // GHT-DMA-04: out of mappings with chains in flight, the chain goes back and
                // waits for the quiescent point; alone in its batch, it breaks the queue.
                guard fault.kind == .notMapped || (fault.kind == .exhausted && !chains.isEmpty) else { throw queue.fail(error) }
                queue.giveBack(chain)
                if fault.kind == .notMapped { isWaitingForMapping = true }
                break
            }
            chains.append(chain)
        }
        // GHT-IOVA-06: the pop stopped at an indirect table not mapped yet (the miss is
        // reported at the quiescent point).
        if queue.takeMappingMiss() != nil { isWaitingForMapping = true }
        guard !chains.isEmpty else {
            try checkMemory()
            return (0, false)
        }
        var batch = RequestBatch(fragments: resolver.fragments, requests: requests)
        batch.queueState = queue.state(completing: chains)
        device.process(queue: index, batch: &batch)
        if batch.isQueueAbandoned { throw queue.fail(.abandonedByDevice) }
        try checkMemory()
        for (i, chain) in chains.enumerated() {
            queue.addUsed(chain, length: UInt32(clamping: min(UInt64(batch.used[i]), chain.writableLength)))
        }
        queue.publishUsed()
        processed += chains.count
        batches += 1
        return (chains.count, queue.needsNotification())
    }

    /// Drains the queue: batches until nothing is available, then re-arms the kick and checks
    /// again (no lost kick, §2.7.10).
    ///
    /// - Returns: the chains processed and whether any batch wants a notification.
    public mutating func drain(batchLimit: Int = 64) throws(VirtqueueError) -> (processed: Int, notify: Bool) {
        defer { device.queueIdle(index) }
        var total = 0
        var notify = false
        isWaitingForMapping = false
        isPacedByDevice = false
        repeat {
            while true {
                let r: (processed: Int, notify: Bool)
                do {
                    r = try runBatch(limit: batchLimit)
                } catch {
                    // GHT-LIFE-03: zeros read from a truncated page look like a malformed ring;
                    // the cause is the lost memory, and that is what the session must hear.
                    if let isMemoryPoisoned, isMemoryPoisoned() {
                        throw .memoryFault(TranslationFault(.memoryLost, address: 0, length: 0, access: .read))
                    }
                    throw error
                }
                total += r.processed
                notify = notify || r.notify
                if r.processed == 0 || isWaitingForMapping || isPacedByDevice { break }
            }
            // A paced queue re-arms the kick too: the driver's next buffers are news only once
            // the device can use them, but a kick then costs nothing and is never missed.
            if isPacedByDevice {
                _ = queue.enableNotifications()
                break
            }
        } while !isWaitingForMapping && queue.enableNotifications()
        return (total, notify)
    }

    /// Resets the queue (device reset or GET_VRING_BASE): nothing in flight afterwards.
    public mutating func reset() {
        queue.reset()
        chains.removeAll()
        resolver.removeAll()
    }
}

