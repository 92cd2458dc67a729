import Synchronization
import VirtioCore
import VirtioSystem

/// The requests of one queue that its device kept to complete later (GHT-ASY-01): which chain
/// each slot holds, and the completions posted from any thread that the queue's worker has not
/// added to the used ring yet.
///
/// Slots and chains belong to the worker thread; what other threads touch — each slot's
/// generation and whether it is still kept, the posted completions, whether the table is closed —
/// is behind one lock, taken once per kept request and once per completion, never on the path
/// of a request completed inside ``VirtioDevice/process(queue:batch:)``. A generation per slot
/// makes a second completion of the same request, or one that arrives after its queue stopped,
/// an ignored no-op instead of a used entry for somebody else's chain (GHT-ASY-03).
final class InFlightTable: @unchecked Sendable {
    private struct Shared {
        var generations: [UInt32]
        var kept: [Bool]
        var posted: [(slot: Int32, length: UInt32)] = []
        var isClosed = false
    }

    private let shared: Locked<Shared>
    /// Posted completions, readable without the lock: the worker looks only when it is not 0.
    private let postedCount = Atomic<Int>(0)
    /// Set while the worker itself runs device code: a completion posted from there is collected
    /// when the device returns, so it needs no wake-up.
    let isWorkerInDevice = Atomic<Bool>(false)
    /// Rung when the first completion of a collection is posted from another thread; set by the
    /// worker before its thread starts.
    var wake: Doorbell?
    /// What the kept requests' memory lives in (mappings, the IOTLB): held while a request is
    /// kept, so memory a late completion writes into is never unmapped under it (GHT-ASY-05).
    let keepAlive: [AnyObject]

    // The worker's own state. The slots are made on the first kept request: a device that
    // completes everything in `process` never pays for them.
    let capacity: Int
    private var chains: [DescriptorChain?] = []
    /// Per slot, the kept request's writable fragments: marked in the dirty log when its
    /// completion is collected (GHT-LOG-05).
    private var written: [ArraySlice<HostRange>] = []
    private var freeSlots: [Int32] = []
    private var spare: [(slot: Int32, length: UInt32)] = []
    /// A batch without a queue: the length each completed slot reported.
    private var testingLengths: [Int32: UInt32] = [:]
    /// Kept requests whose completion the worker has not collected.
    private(set) var outstanding = 0

    /// A table of `capacity` slots (a queue holds at most its size in chains).
    init(capacity: Int, wake: Doorbell?, keepAlive: [AnyObject] = []) {
        shared = Locked(Shared(generations: [], kept: []))
        self.capacity = capacity
        self.wake = wake
        self.keepAlive = keepAlive
    }

    /// Keeps `chain` (worker thread); returns its slot and generation. `slot`, when given, is
    /// the slot to use (a batch without a queue keeps request `i` in slot `i`).
    func keep(_ chain: DescriptorChain?, written fragments: ArraySlice<HostRange> = [], slot wanted: Int32? = nil)
        -> (slot: Int32, generation: UInt32) {
        if chains.isEmpty {
            chains = [DescriptorChain?](repeating: nil, count: capacity)
            written = [ArraySlice<HostRange>](repeating: [], count: capacity)
            freeSlots = (0..<Int32(capacity)).reversed()
            shared.withLock { s in
                s.generations = [UInt32](repeating: 0, count: capacity)
                s.kept = [Bool](repeating: false, count: capacity)
            }
        }
        let slot: Int32
        if let wanted {
            slot = wanted
            if let i = freeSlots.lastIndex(of: wanted) { freeSlots.remove(at: i) }
        } else {
            // A queue never has more chains popped than slots: its size bounds both.
            slot = freeSlots.removeLast()
        }
        chains[Int(slot)] = chain
        written[Int(slot)] = fragments
        outstanding += 1
        let generation = shared.withLock { s in
            s.generations[Int(slot)] &+= 1
            s.kept[Int(slot)] = true
            return s.generations[Int(slot)]
        }
        return (slot, generation)
    }

    /// Posts the completion of the request kept in `slot` with `generation` (any thread).
    /// Returns `false`, posting nothing, when that request was completed already or the table
    /// was closed (its queue stopped) (GHT-ASY-03).
    func complete(slot: Int32, generation: UInt32, length: UInt32) -> Bool {
        let first: Bool? = shared.withLock { s in
            guard !s.isClosed, s.generations[Int(slot)] == generation, s.kept[Int(slot)] else { return nil }
            s.kept[Int(slot)] = false
            s.posted.append((slot, length))
            postedCount.store(s.posted.count, ordering: .releasing)
            return s.posted.count == 1
        }
        guard let first else { return false }
        if first && !isWorkerInDevice.load(ordering: .acquiring) { try? wake?.signal() }
        return true
    }

    /// Whether completions wait to be collected.
    var hasPosted: Bool { postedCount.load(ordering: .acquiring) > 0 }

    /// A posted completion with the chain it completes (`nil` in a batch without a queue).
    struct Completion {
        let slot: Int32
        let chain: DescriptorChain?
        let length: UInt32
        /// The request's writable fragments.
        let written: ArraySlice<HostRange>
    }

    /// Appends every posted completion to `completions` with its chain (worker thread); each
    /// slot stays taken until ``release(_:reuse:)``. Returns how many.
    @discardableResult
    func collect(into completions: inout [Completion]) -> Int {
        guard hasPosted else { return 0 }
        shared.withLock { s in
            swap(&s.posted, &spare)
            postedCount.store(0, ordering: .relaxed)
        }
        for (slot, length) in spare { completions.append(Completion(slot: slot, chain: chains[Int(slot)], length: length, written: written[Int(slot)])) }
        let n = spare.count
        spare.removeAll(keepingCapacity: true)
        return n
    }

    /// Frees `slot` once its completion was added to the used ring (worker thread).
    func release(_ slot: Int32, reuse: Bool = true) {
        chains[Int(slot)] = nil
        written[Int(slot)] = []
        outstanding -= 1
        if reuse { freeSlots.append(slot) }
    }

    /// Closes the table: completions posted from now on are ignored (the queue stopped, reset or
    /// broke). Returns how many kept requests were never completed.
    @discardableResult
    func close() -> Int {
        shared.withLock { $0.isClosed = true }
        return outstanding
    }

    /// Forgets every kept request (the queue was reset): their completions are ignored, every
    /// slot is free again (GHT-ASY-04).
    func forgetAll() {
        shared.withLock { s in
            for i in s.generations.indices { s.generations[i] &+= 1 }
            for i in s.kept.indices { s.kept[i] = false }
            s.posted.removeAll()
            postedCount.store(0, ordering: .relaxed)
        }
        guard !chains.isEmpty else { return }
        chains = [DescriptorChain?](repeating: nil, count: capacity)
        written = [ArraySlice<HostRange>](repeating: [], count: capacity)
        freeSlots = (0..<Int32(capacity)).reversed()
        outstanding = 0
    }

    /// A batch without a queue (tests play the worker): collects what was posted.
    func collectForTesting() {
        var completions: [Completion] = []
        collect(into: &completions)
        for c in completions {
            testingLengths[c.slot] = c.length
            release(c.slot, reuse: false)
        }
    }

    /// A batch without a queue: the length the request in `slot` was completed with.
    func testingLength(_ slot: Int32) -> UInt32? { testingLengths[slot] }
}
