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

    init(fragments: [HostRange], requests: [(readable: Range<Int>, writable: Range<Int>)]) {
        self.fragments = fragments
        self.requests = requests
        used = [UInt32](repeating: 0, count: requests.count)
    }

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
        return part
    }

    /// Takes the used lengths of `part` (made by ``selecting(_:)`` with `indices`) and whether
    /// it abandoned the queue.
    public mutating func merge(_ part: RequestBatch, at indices: [Int]) {
        for (k, i) in indices.enumerated() { used[i] = part.used[k] }
        if part.isQueueAbandoned { isQueueAbandoned = true }
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

    /// The used length request `i` was completed with.
    public func usedLength(_ i: Int) -> UInt32 { used[i] }
}
