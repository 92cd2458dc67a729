extension SplitDeviceQueue {
    /// Starts keeping `area` (this queue's part of the in-flight area, Spec/restart.md §1)
    /// current, after recovering what it records (GHT-INF-07, GHT-INF-08). Call once, right
    /// after setting the queue up at the ring's used index and before the first pop.
    ///
    /// A fresh area (version 0) is initialized and the queue resumes where it was set up. A
    /// recorded one decides where the queue resumes: the next available index becomes the used
    /// index plus the requests in flight, and those requests are popped again, in the order they
    /// were first popped, before any new chain, each through the chain validation of a new
    /// one and counting as in flight for GHT-VAL-03.
    ///
    /// - Throws: the error that broke the queue: ``VirtqueueError/inflightRegion(_:)`` when the
    ///   area cannot be believed; nothing is resubmitted and the queue needs a reset.
    public mutating func trackInflight(in range: HostRange) throws(VirtqueueError) {
        guard let area = UnsafeInflightSplit(range) else {
            throw fail(.inflightRegion(.areaTooSmall(bytes: range.count, queueSize: layout.count)))
        }
        let recovered: InflightSplitRecovery?
        do {
            recovered = try InflightSplitRecovery.recover(area, queueSize: layout.count, usedIndex: usedIndex)
        } catch {
            throw fail(.inflightRegion(error))
        }
        inflightTracker = InflightSplitTracker(area: area, queueSize: layout.count, counter: recovered?.nextCounter ?? 0)
        guard let recovered else { return }
        resubmit = recovered.resubmit
        resubmitRemaining = resubmit.count
        availCursor = RingCursor(position: recovered.nextAvail, limit: layout.queueSize)
        // The resubmitted chains count as popped: in flight until completed (``inFlightCount``).
        availBase = usedIndex
    }

    /// Requests still to resubmit from the in-flight area.
    public var pendingResubmissions: Int { resubmitRemaining }

    /// Pops the next head to resubmit through the general chain walk. Its entry in the area stays
    /// marked with its first counter, so a crash before it completes resubmits it again, in the
    /// same order. `nil` when the walk cannot finish now (the arena is full, or an indirect table
    /// is not mapped yet): nothing is consumed.
    @usableFromInline
    mutating func popResubmitted() throws(VirtqueueError) -> DescriptorChain? {
        if _slowPath(broken) { throw brokenBy! }
        let head = resubmit[resubmit.count - resubmitRemaining]
        let tag = Self.inFlightTag(epoch)
        // Distinct by recovery; a head in flight twice is the driver's violation all the same.
        guard inFlight[Int(head)] != tag else { throw fail(.headInFlight(head)) }
        inFlight[Int(head)] = tag
        let d = ring.descriptorTable.loadValidated(Int(head))
        guard let chain = try walkChain(head: head, first: d, second: nil) else {
            inFlight[Int(head)] = 0
            return nil
        }
        resubmitRemaining -= 1
        resubmitPoppedAt = lastAvail
        return chain
    }
}
