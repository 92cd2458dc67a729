import VirtioCore
import VirtioSystem

/// One queue of a session, driven from its worker thread: pops a batch of chains, resolves each
/// through the queue's translator, hands the batch to the device, adds the used entries,
/// publishes once and decides on the used-buffer notification (event index). Requests the device
/// kept (``RequestBatch/completeLater(_:)``) are added when their completions are collected, at
/// the start of each drain and after each batch (GHT-ASY-02); with VIRTIO_F_IN_ORDER, in the
/// order their chains were popped (GHT-ASY-06).
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
    /// The used lengths' array, lent to each batch.
    private var usedStorage: [UInt32] = []
    /// The requests the device kept (GHT-ASY-01).
    let inFlight: InFlightTable
    private var completions: [InFlightTable.Completion] = []
    /// VIRTIO_F_IN_ORDER: used entries in pop order; chains completed or kept, waiting for an
    /// earlier kept one (`slot` -1: completed with `length`).
    private let inOrder: Bool
    private var held: [(chain: DescriptorChain, length: UInt32, slot: Int32)] = []
    private var heldHead = 0
    /// IN_ORDER: the length each collected slot was completed with, until its turn comes.
    private var collectedLengths: [Int32: UInt32] = [:]
    /// Called after each batch, completed or abandoned, when no chain of this queue is in
    /// flight: grant mappings evicted during the batch and revoked grants are released there.
    let quiescentPoint: (() -> Void)?
    /// Whether any memory this queue reaches lost pages to a peer's truncation (GHT-LIFE-03);
    /// asked only when ``TruncationGuard/epoch`` moved, so a batch pays one atomic load.
    let isMemoryPoisoned: (() -> Bool)?
    /// The epoch last checked; none at first, so the first batch checks (a truncation met while
    /// the queue was being set up, before this processor existed, counts too).
    private var guardEpoch = UInt64.max
    /// The session's dirty-logging switch (VHOST_F_LOG_ALL); `nil` outside a session.
    let dirtyLog: DirtyLogControl?
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

    /// - Parameter keepAlive: what the queue's memory lives in; a request the device kept holds
    ///   it until completed (GHT-ASY-05).
    public init(queue: consuming Queue, index: Int, device: any VirtioDevice, quiescentPoint: (() -> Void)? = nil,
                isMemoryPoisoned: (() -> Bool)? = nil, keepAlive: [AnyObject] = []) {
        self.init(queue: queue, index: index, device: device, quiescentPoint: quiescentPoint, isMemoryPoisoned: isMemoryPoisoned,
                  keepAlive: keepAlive, dirtyLog: nil)
    }

    init(queue: consuming Queue, index: Int, device: any VirtioDevice, quiescentPoint: (() -> Void)?,
         isMemoryPoisoned: (() -> Bool)?, keepAlive: [AnyObject], dirtyLog: DirtyLogControl?) {
        self.dirtyLog = dirtyLog
        inFlight = InFlightTable(capacity: queue.state.size, wake: nil, keepAlive: keepAlive)
        inOrder = queue.features.contains(.inOrder)
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
        // (the device returned): none is in flight, whatever the outcome, unless the device kept
        // some (GHT-ASY-05): then the point comes when the last is collected.
        defer { if inFlight.outstanding == 0 { quiescentPoint?() } }
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
        var batch = RequestBatch(fragments: resolver.fragments, requests: requests, usedStorage: &usedStorage)
        defer { batch.returnUsedStorage(to: &usedStorage) }
        batch.queueState = queue.state(completing: chains)
        batch.chains = chains
        batch.inFlight = inFlight
        inFlight.isWorkerInDevice.store(true, ordering: .relaxed)
        device.process(queue: index, batch: &batch)
        inFlight.isWorkerInDevice.store(false, ordering: .releasing)
        if batch.isQueueAbandoned { throw queue.fail(.abandonedByDevice) }
        try checkMemory()
        // Dirty logging (Spec/restart.md §3): one load per batch while it is off.
        var log = dirtyLog?.isOn == true ? dirtyLog?.batch(queue: index) : nil
        var added = log != nil ? markCompleted(batch, chains.count, into: &log!) : 0
        if batch.keptSlots != nil || (inOrder && heldHead < held.count) {
            addUsed(batch)
        } else {
            for (i, chain) in chains.enumerated() {
                queue.addUsed(chain, length: Self.clamp(batch.used[i], chain))
            }
        }
        // Kept requests the device completed meanwhile, on this thread or another.
        added += addCollected(&log)
        queue.publishUsed()
        if log != nil { log!.markPublished(usedRing: added > 0 || inOrder) }
        processed += chains.count
        batches += 1
        return (chains.count, queue.needsNotification())
    }

    /// Drains the queue: collects what kept requests completed, then batches until nothing is
    /// available, then re-arms the kick and checks again (no lost kick, §2.7.10).
    ///
    /// - Parameter polling: the worker polls the queue: the kick stays suppressed (GHT-ASY-08).
    /// - Returns: the chains processed and whether any batch, or any collected completion,
    ///   wants a notification.
    public mutating func drain(batchLimit: Int = 64, polling: Bool = false) throws(VirtqueueError) -> (processed: Int, notify: Bool) {
        // The device's turn ends only when no request of the queue is inside it (GHT-ASY-09).
        defer { if inFlight.outstanding == 0 { device.queueIdle(index) } }
        var total = 0
        var notify = try collectCompletions()
        var lastProcessed = 0
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
                lastProcessed = r.processed
                notify = notify || r.notify
                if r.processed == 0 || isWaitingForMapping || isPacedByDevice { break }
            }
            // A paced queue re-arms the kick too: the driver's next buffers are news only once
            // the device can use them, but a kick then costs nothing and is never missed.
            if polling { break }
            // Nothing popped while the device keeps requests: the segment arena may be full
            // until they complete. Their completion wakes the worker, which drains again; looping
            // here would never let it reap them (the device reaps on this thread).
            if isPacedByDevice || (lastProcessed == 0 && inFlight.outstanding > 0) {
                _ = queue.enableNotifications()
                break
            }
        } while !isWaitingForMapping && queue.enableNotifications()
        return (total, notify)
    }

    /// Adds the completions of kept requests posted since the last call to the used ring,
    /// publishes them and returns whether the driver wants a notification (GHT-ASY-02).
    public mutating func collectCompletions() throws(VirtqueueError) -> Bool {
        guard inFlight.hasPosted else { return false }
        // GHT-LIFE-03: a device that wrote into memory the peer truncated completes nothing.
        try checkMemory()
        var log = dirtyLog?.isOn == true ? dirtyLog?.batch(queue: index) : nil
        guard addCollected(&log) > 0 else { return false }
        queue.publishUsed()
        if log != nil { log!.markPublished(usedRing: true) }
        if inFlight.outstanding == 0 { quiescentPoint?() }
        return queue.needsNotification()
    }

    /// Asks the driver not to kick: the worker polls (GHT-ASY-08).
    public mutating func suppressKicks() { queue.disableNotifications() }

    /// Lets the device reap its completions on this thread (its completion event fired, or the
    /// worker polls), then collects them (GHT-ASY-07).
    public mutating func serviceDevice() {
        inFlight.isWorkerInDevice.store(true, ordering: .relaxed)
        device.serviceQueue(index)
        inFlight.isWorkerInDevice.store(false, ordering: .releasing)
    }

    /// Kept requests not completed yet.
    public var outstandingCount: Int { inFlight.outstanding }

    /// Ignores completions from now on (the queue stops, was reset or broke); returns how many
    /// kept requests were never completed (GHT-ASY-04).
    @discardableResult
    public mutating func abandonOutstanding() -> Int { inFlight.close() }

    /// Adds the used entries of a batch in which the device kept requests, or of any batch while
    /// IN_ORDER entries wait.
    private mutating func addUsed(_ batch: RequestBatch) {
        for (i, chain) in chains.enumerated() {
            let slot = batch.keptSlots?[i] ?? -1
            if inOrder {
                held.append((chain, slot >= 0 ? 0 : Self.clamp(batch.used[i], chain), slot))
            } else if slot < 0 {
                queue.addUsed(chain, length: Self.clamp(batch.used[i], chain))
            }
        }
        if inOrder { addHeld() }
    }

    /// Adds the collected completions of kept requests; returns how many used entries were added.
    @discardableResult
    private mutating func addCollected(_ log: inout DirtyLogBatch?) -> Int {
        guard inFlight.collect(into: &completions) > 0 else { return 0 }
        var added = 0
        for c in completions {
            guard let chain = c.chain else { continue }
            // GHT-LOG-05: a kept request's buffers are marked once the device completed it.
            if log != nil { log!.markWritten(c.written) }
            let length = Self.clamp(c.length, chain)
            if inOrder {
                collectedLengths[c.slot] = length
            } else {
                queue.addUsed(chain, length: length)
                inFlight.release(c.slot)
                added += 1
            }
        }
        completions.removeAll(keepingCapacity: true)
        if inOrder { added += addHeld() }
        return added
    }

    /// IN_ORDER: adds the held entries from the oldest up to the first kept one not completed.
    @discardableResult
    private mutating func addHeld() -> Int {
        var added = 0
        while heldHead < held.count {
            let h = held[heldHead]
            var length = h.length
            if h.slot >= 0 {
                guard let collected = collectedLengths.removeValue(forKey: h.slot) else { break }
                length = collected
                inFlight.release(h.slot)
            }
            queue.addUsed(h.chain, length: length)
            heldHead += 1
            added += 1
        }
        if heldHead == held.count {
            held.removeAll(keepingCapacity: true)
            heldHead = 0
        }
        return added
    }

    /// USD-DEV-02: a used length is at most what the chain can take.
    @inline(__always)
    private static func clamp(_ used: UInt32, _ chain: DescriptorChain) -> UInt32 {
        UInt32(clamping: min(UInt64(used), chain.writableLength))
    }

    /// Resets the queue (device reset or GET_VRING_BASE): nothing in flight afterwards; a kept
    /// request completed later is ignored (GHT-ASY-04).
    public mutating func reset() {
        inFlight.forgetAll()
        queue.reset()
        chains.removeAll()
        resolver.removeAll()
        held.removeAll()
        heldHead = 0
        collectedLengths.removeAll()
    }
}

