import VirtioCore

/// The requests of one batch: each chain's device-readable and device-writable bytes, already
/// resolved to host memory, and the used length the device reports for it.
public struct RequestBatch {
    @usableFromInline var fragments: [HostRange]
    @usableFromInline var requests: [(readable: Range<Int>, writable: Range<Int>)]
    @usableFromInline var used: [UInt32]
    /// The private copies committed requests start with (``commit(_:)``): kept alive as long
    /// as a fragment points into them.
    var privateCopies: PrivateCopies?
    /// Set by ``abandonQueue()``: the queue breaks instead of completing the batch.
    public private(set) var isQueueAbandoned = false
    /// Where the queue will stand once this batch is completed and published (GHT-QST-05): what
    /// a scheduler saves as the guest's queue context. `nil` for a batch made without a queue.
    public internal(set) var queueState: QueueState?
    /// The chains of the requests, in order (empty for a batch made without a queue).
    var chains: [DescriptorChain] = []
    /// Where kept requests go (``completeLater(_:)``); made on first use for a batch without a queue.
    var inFlight: InFlightTable?
    /// Per request, the slot it was kept in, or -1; `nil` while no request was kept.
    var keptSlots: [Int32]?

    init(fragments: [HostRange], requests: [(readable: Range<Int>, writable: Range<Int>)]) {
        self.fragments = fragments
        self.requests = requests
        used = [UInt32](repeating: 0, count: requests.count)
    }

    /// A batch whose used lengths go into `storage` (emptied, its capacity kept): the queue
    /// processor lends the same array to every batch, which then costs no allocation.
    init(fragments: [HostRange], requests: [(readable: Range<Int>, writable: Range<Int>)], usedStorage storage: inout [UInt32]) {
        self.fragments = fragments
        self.requests = requests
        storage.removeAll(keepingCapacity: true)
        storage.append(contentsOf: repeatElement(0, count: requests.count))
        used = []
        swap(&used, &storage)
    }

    /// Gives the used-length storage back (``init(fragments:requests:usedStorage:)``).
    mutating func returnUsedStorage(to storage: inout [UInt32]) { swap(&used, &storage) }

    /// Keeps request `i` in the device: it is not completed with this batch but later, from any
    /// thread, through the returned handle (GHT-ASY-01). Until then its memory stays valid and
    /// the queue's quiescent point waits for it (GHT-ASY-05). A kept request's used length in
    /// this batch is ignored.
    public mutating func completeLater(_ i: Int) -> InFlightRequest {
        precondition(keptSlots?[i] ?? -1 < 0, "request \(i) was kept already")
        let table = inFlight ?? InFlightTable(capacity: requests.count, wake: nil)
        inFlight = table
        let written = fragments[requests[i].writable]
        let (slot, generation) = chains.isEmpty ? table.keep(nil, written: written, slot: Int32(i)) : table.keep(chains[i], written: written)
        if keptSlots == nil { keptSlots = [Int32](repeating: -1, count: requests.count) }
        keptSlots![i] = slot
        return InFlightRequest(table: table, slot: slot, generation: generation, fragments: fragments,
                               readable: requests[i].readable, writable: requests[i].writable, privateCopies: privateCopies)
    }

    /// Whether request `i` was kept (``completeLater(_:)``).
    public func isKept(_ i: Int) -> Bool { keptSlots?[i] ?? -1 >= 0 }

    /// Gives the queue up: none of this batch's requests is completed and the queue breaks
    /// (``VirtqueueError/abandonedByDevice``, DEVICE_NEEDS_RESET), as for a ring violation. For
    /// a device that can no longer vouch for what it did with the batch — the scheduler cut the
    /// guest off mid-request (GHT-SCH-08).
    public mutating func abandonQueue() { isQueueAbandoned = true }

    /// The requests at `indices` as a batch of their own, over the same fragments; completing
    /// it and then ``merge(_:at:)`` completes them here. For a device that answers some requests
    /// itself (a device model denying them) and hands the rest on.
    public func selecting(_ indices: [Int]) -> RequestBatch {
        var part = RequestBatch(fragments: fragments, requests: indices.map { requests[$0] })
        part.privateCopies = privateCopies
        part.queueState = queueState
        part.chains = chains.isEmpty ? [] : indices.map { chains[$0] }
        part.inFlight = inFlight
        return part
    }

    /// Takes the used lengths of `part` (made by ``selecting(_:)`` with `indices`) and whether
    /// it abandoned the queue.
    public mutating func merge(_ part: RequestBatch, at indices: [Int]) {
        for (k, i) in indices.enumerated() { used[i] = part.used[k] }
        if part.isQueueAbandoned { isQueueAbandoned = true }
        if let partSlots = part.keptSlots {
            if keptSlots == nil { keptSlots = [Int32](repeating: -1, count: requests.count) }
            for (k, i) in indices.enumerated() where partSlots[k] >= 0 { keptSlots![i] = partSlots[k] }
            inFlight = part.inFlight
        }
    }

    /// Request `i`'s device-readable and device-writable byte counts.
    public func byteCounts(_ i: Int) -> (readable: Int, writable: Int) {
        (fragments[requests[i].readable].reduce(0) { $0 + $1.count }, fragments[requests[i].writable].reduce(0) { $0 + $1.count })
    }

    /// The number of requests.
    public var count: Int { requests.count }

    /// A reader over request `i`'s device-readable bytes.
    public func reader(_ i: Int) -> FragmentReader { FragmentReader(fragments, requests[i].readable) }

    /// A writer over request `i`'s device-writable bytes.
    public func writer(_ i: Int) -> FragmentWriter { FragmentWriter(fragments, requests[i].writable) }

    /// Completes request `i` with `usedLength` bytes written (at most its writable capacity;
    /// a request not completed reports 0).
    public mutating func complete(_ i: Int, usedLength: UInt32) {
        let capacity = fragments[requests[i].writable].reduce(0) { $0 + $1.count }
        precondition(Int(usedLength) <= capacity, "used length exceeds the request's writable capacity")
        used[i] = usedLength
    }

    /// Completes request `i` with what `writer` wrote.
    public mutating func complete(_ i: Int, with writer: FragmentWriter) {
        complete(i, usedLength: writer.usedLength)
    }
}

extension RequestBatch {
    /// A batch over given fragments, for testing devices without a queue (`queueState`: where
    /// the batch's queue would stand once it is completed).
    public static func testing(fragments: [HostRange], requests: [(readable: Range<Int>, writable: Range<Int>)],
                               queueState: QueueState? = nil) -> RequestBatch {
        var batch = RequestBatch(fragments: fragments, requests: requests)
        batch.queueState = queueState
        return batch
    }

    /// The used length request `i` was completed with; for a kept request, what its handle
    /// completed it with (0 while it is outstanding). For tests, which play the queue's worker.
    public func usedLength(_ i: Int) -> UInt32 {
        guard let slot = keptSlots?[i], slot >= 0, let inFlight else { return used[i] }
        inFlight.collectForTesting()
        return inFlight.testingLength(slot) ?? 0
    }

    /// How many kept requests are not completed yet. For tests, which play the queue's worker.
    public var outstandingCount: Int {
        guard let inFlight else { return 0 }
        inFlight.collectForTesting()
        return inFlight.outstanding
    }
}
