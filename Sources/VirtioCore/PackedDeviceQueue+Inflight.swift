extension PackedDeviceQueue {
    /// Starts keeping `area` (this queue's part of the in-flight area, Spec/restart.md §1)
    /// current, after recovering what it records (GHT-INF-12…GHT-INF-15). Call once, right after
    /// setting the queue up and before the first pop.
    ///
    /// A fresh area (version 0) is initialized and the queue resumes where it was set up. A
    /// recorded one decides where the queue resumes, whatever SET_VRING_BASE said (QEMU keeps
    /// no packed position of its own after a back-end died, and sends a stale one): the used
    /// position is the area's last committed one, the next available position that plus every
    /// slot the chains in flight took. Those chains are popped again from the area's copies of
    /// their descriptors, in counter order, before any new chain, each through the validation
    /// of a new one.
    ///
    /// - Throws: the error that broke the queue: ``VirtqueueError/inflightRegion(_:)`` when the
    ///   area cannot be believed; nothing is resubmitted and the queue needs a reset.
    public mutating func trackInflight(in range: HostRange) throws(VirtqueueError) {
        guard let area = UnsafeInflightPacked(range) else {
            throw fail(.inflightRegion(.areaTooSmall(bytes: range.count, queueSize: count)))
        }
        let descriptors = ring.descriptorRing
        let recovered: InflightPackedRecovery
        do {
            recovered = try InflightPackedRecovery.recover(area, queueSize: count, availPosition: availPosition,
                                                           usedPosition: usedPosition) { position in
                let flags = PackedDescriptorFlags(rawValue: UInt16(truncatingIfNeeded: descriptors.loadWord1(position.slot) &>> 48))
                return !flags.isAvailable(wrapCounter: position.wrapCounter)
            }
        } catch {
            throw fail(.inflightRegion(error))
        }
        inflightTracker = InflightPackedTracker(area: area, queueSize: count, recovery: recovered)
        guard !recovered.fresh else { return }
        resubmit = recovered.resubmit
        resubmitRemaining = resubmit.count
        availPosition = recovered.availPosition
        usedPosition = recovered.usedPosition
        signalledPosition = usedPosition
    }

    /// Requests still to resubmit from the in-flight area.
    public var pendingResubmissions: Int { resubmitRemaining }

    /// Records a one-slot list popped as buffer `id` (GHT-INF-09).
    @inlinable
    mutating func trackOne(_ d: PackedDescriptor, id: UInt16) throws(VirtqueueError) {
        inflightTracker!.beginList()
        try stageTracked(d)
        inflightTracker!.popped(id: id)
    }

    /// Copies `d` into the area; a list beyond the ring's slots breaks the queue (GHT-INF-10).
    @inlinable
    mutating func stageTracked(_ d: PackedDescriptor) throws(VirtqueueError) {
        guard inflightTracker!.stage(d) else { throw fail(.slotsInFlightBeyondRing(limit: count)) }
    }

    /// Pops the next chain to resubmit from the area's copies, validated as a new one (its
    /// indirect table read and its addresses resolved now). Its entries stay marked with its
    /// first counter, so a crash before it completes resubmits it again, in the same order.
    /// `nil` when the walk cannot finish now (the arena is full, or an indirect table is not
    /// mapped yet): nothing is consumed.
    @usableFromInline
    mutating func popResubmitted() throws(VirtqueueError) -> DescriptorChain? {
        let chain = resubmit[resubmit.count - resubmitRemaining]
        var segments = SegmentStaging(block: count, view: arena.view)
        let first = chain.descriptors[0]
        if first.flags.contains(.indirect) {
            guard try appendIndirect(first, to: &segments) else { return nil }
        } else {
            for d in chain.descriptors {
                guard try append(d, to: &segments) else { return nil }
            }
        }
        let popped = try finishList(segments, id: chain.id, slots: chain.descriptors.count)
        inflightTracker?.resubmitted(id: chain.id, entry: chain.entry, last: chain.last)
        resubmitRemaining -= 1
        inFlight[popped.head] |= Self.resubmittedMark
        return popped
    }
}
