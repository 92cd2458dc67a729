/// The device (back-end) side of a packed virtqueue (VIRTIO 1.2 §2.8).
///
/// The same contract as ``SplitDeviceQueue``, over the packed layout: chains are popped in
/// ring order (PKD-DEV-01), each descriptor is read once into the private segment arena, and
/// everything the split side validates is validated here too, plus the packed specifics — a
/// slot whose AVAIL/USED bits do not say available in the current lap ends what is available
/// (PKD-DEV-03), a later slot of a list that is not available, a buffer id out of range or in
/// flight, an INDIRECT descriptor inside a NEXT list (PKD-IND-01). The first violation breaks
/// the queue and sets DEVICE_NEEDS_RESET. The chains it yields are ``DescriptorChain`` values
/// like the split side's (their head index is the buffer id), so a device cannot tell which
/// format they came from.
public struct PackedDeviceQueue<Memory: MemoryTranslator>: ~Copyable, @unchecked Sendable {
    public let layout: PackedRingLayout
    public let ring: PackedRing
    public let memory: Memory
    public let features: VirtioFeatures

    @usableFromInline let count: Int
    @usableFromInline let eventIndexEnabled: Bool
    @usableFromInline let indirectEnabled: Bool
    @usableFromInline let inOrderEnabled: Bool
    @usableFromInline let statusCell: DeviceStatusCell?
    @usableFromInline let storage: UnsafeAllocation
    /// Per buffer id: the in-flight tag of the epoch it was popped in (bits 0–31; 0 when not
    /// in flight), the ring slots its list took (bits 32–47; 1 for an indirect list) and
    /// ``resubmittedMark``: one load and one store per pop and per completion.
    @usableFromInline let inFlight: UnsafeMutablePointer<UInt64>
    /// Segment blocks: one per buffer id, plus a staging block (index N) that a list is walked
    /// into before its id (in its last descriptor) is known.
    @usableFromInline let arena: UnsafeSegmentArena
    /// The ring areas' device-visible addresses (zero when set up over host memory directly),
    /// kept as data for ``state``.
    @usableFromInline let areas: PackedRingAddresses

    /// The next slot to pop, with the driver's wrap counter the device expects there.
    @usableFromInline var availPosition: PackedRingPosition
    /// The next slot to write a used descriptor to, with the device's wrap counter.
    @usableFromInline var usedPosition: PackedRingPosition
    /// The used position at the last notification decision.
    @usableFromInline var signalledPosition: PackedRingPosition
    @usableFromInline var freeOverflow: Int
    @usableFromInline var epoch: UInt32 = 0
    @usableFromInline var broken = false
    @usableFromInline var brokenBy: VirtqueueError?
    /// Set when a pop stopped at an indirect table that is not mapped yet (GHT-IOVA-06).
    @usableFromInline var mappingMiss: TranslationFault?
    /// IN_ORDER: the used descriptor being batched (PKD-DEF-08), not yet written.
    @usableFromInline var pendingUsed: PendingUsed?
    /// The slot of the first used descriptor added since the last publication, held back until
    /// ``publishUsed()`` writes it after the others (GHT-PKD-11); -1 when there is none.
    @usableFromInline var heldUsedSlot = -1
    /// That descriptor's second word (len, id, flags).
    @usableFromInline var heldUsedWord: UInt64 = 0
    /// The in-flight area kept current, once ``trackInflight(in:)`` attached one (GHT-INF-09).
    @usableFromInline var inflightTracker: InflightPackedTracker?
    /// Chains to resubmit from the area's copies before any new one (GHT-INF-13), and how many
    /// are left (`resubmit[resubmit.count - resubmitRemaining]` is next).
    @usableFromInline var resubmit: [InflightPackedChain] = []
    @usableFromInline var resubmitRemaining = 0

    @inlinable
    static func inFlightTag(_ epoch: UInt32) -> UInt32 { epoch &<< 1 | 1 }
    /// Bit 48 of an id's in-flight word: the chain was resubmitted from the in-flight area
    /// (``giveBack(_:)`` returns it to the resubmission list, not to the ring).
    @inlinable
    static var resubmittedMark: UInt64 { 1 &<< 48 }
    /// The ring slots an id's list took, from its in-flight word.
    @inlinable @inline(__always)
    static func slots(_ entry: UInt64) -> Int { Int(truncatingIfNeeded: (entry &>> 32) & 0xFFFF) }

    /// Sets up the device side over ring areas at `addresses`, translated once through `memory`.
    ///
    /// - Parameters:
    ///   - queueSize: the size the driver chose, 1 to 32768 (PKD-DEF-01).
    ///   - features: the negotiated features (INDIRECT_DESC, EVENT_IDX and IN_ORDER matter).
    ///   - availPosition: where to resume popping (vhost-user SET_VRING_BASE, low half).
    ///   - usedPosition: where to resume writing used descriptors (the high half).
    public init(queueSize: Int, addresses: PackedRingAddresses, memory: Memory, features: VirtioFeatures,
                statusCell: DeviceStatusCell? = nil, availPosition: PackedRingPosition = .start,
                usedPosition: PackedRingPosition = .start, overflowBlocks: Int? = nil) throws(RingSetupError) {
        guard let layout = PackedRingLayout(queueSize: queueSize) else { throw .invalidQueueSize(queueSize) }
        let ring = try PackedRing(layout: layout, addresses: addresses, memory: memory)
        self.init(ring: ring, areas: addresses, memory: memory, features: features, statusCell: statusCell,
                  availPosition: availPosition, usedPosition: usedPosition, overflowBlocks: overflowBlocks)
    }

    /// Sets up the device side over an already resolved ring.
    public init(ring: PackedRing, memory: Memory, features: VirtioFeatures, statusCell: DeviceStatusCell? = nil,
                availPosition: PackedRingPosition = .start, usedPosition: PackedRingPosition = .start,
                overflowBlocks: Int? = nil) {
        self.init(ring: ring, areas: PackedRingAddresses(descriptorRing: 0, driverEventArea: 0, deviceEventArea: 0),
                  memory: memory, features: features, statusCell: statusCell, availPosition: availPosition,
                  usedPosition: usedPosition, overflowBlocks: overflowBlocks)
    }

    init(ring: PackedRing, areas: PackedRingAddresses, memory: Memory, features: VirtioFeatures, statusCell: DeviceStatusCell?,
         availPosition: PackedRingPosition, usedPosition: PackedRingPosition, overflowBlocks: Int?) {
        let n = ring.layout.count
        let overflow = max(overflowBlocks ?? UnsafeSegmentArena.defaultOverflowBlocks(queueSize: n), 1)
        var plan = AllocationPlan()
        let inFlightOffset = plan.reserve(UInt64.self, count: n)
        let arenaOffsets = UnsafeSegmentArena.plan(&plan, queueSize: n + 1, overflowBlocks: overflow)
        storage = UnsafeAllocation(plan)
        inFlight = storage.carve(UInt64.self, at: inFlightOffset, count: n)
        arena = UnsafeSegmentArena(allocation: storage, offsets: arenaOffsets, queueSize: n + 1, overflowBlocks: overflow)
        freeOverflow = arena.resetFreeStack()
        layout = ring.layout
        self.ring = ring
        self.areas = areas
        self.memory = memory
        self.features = features
        self.statusCell = statusCell
        count = n
        eventIndexEnabled = features.contains(.eventIndex)
        indirectEnabled = features.contains(.indirectDescriptors)
        inOrderEnabled = features.contains(.inOrder)
        // A position beyond the ring (a hostile SET_VRING_BASE is refused by the session; this
        // is the embedder's value) starts over at slot 0 of the same lap.
        self.availPosition = availPosition.isValid(count: n) ? availPosition : PackedRingPosition(slot: 0, wrapCounter: availPosition.wrapCounter)
        self.usedPosition = usedPosition.isValid(count: n) ? usedPosition : PackedRingPosition(slot: 0, wrapCounter: usedPosition.wrapCounter)
        signalledPosition = self.usedPosition
    }

    /// The next slot the device will pop, with its wrap counter (vhost-user GET_VRING_BASE).
    public var nextAvailPosition: PackedRingPosition { availPosition }
    /// The next slot the device will write a used descriptor to, with its wrap counter.
    /// An IN_ORDER batch not yet published is counted.
    public var nextUsedPosition: PackedRingPosition { usedPosition }
    /// Whether a violation has broken the queue.
    public var isBroken: Bool { broken }
    /// The error that broke the queue, if any.
    public var failure: VirtqueueError? { brokenBy }
    /// The number of popped chains not yet completed.
    /// (Counted over the ids: not for a hot path.)
    public var inFlightCount: Int {
        let tag = UInt64(Self.inFlightTag(epoch))
        return (0..<count).reduce(0) { $0 + (inFlight[$1] & 0xFFFF_FFFF == tag ? 1 : 0) }
    }
    /// Whether completions are added but not written yet (``publishUsed()`` writes them): the
    /// first of a batch (GHT-PKD-11), or an IN_ORDER batch.
    public var hasUnwrittenUsed: Bool { pendingUsed != nil || heldUsedSlot >= 0 }
    /// The position of the used descriptor held back for ``publishUsed()`` (GHT-PKD-11), if any.
    package var heldUsedPosition: PackedRingPosition? {
        guard heldUsedSlot >= 0 else { return nil }
        // The held slot is at or behind the used position, in its lap or the one before.
        let wrap = heldUsedSlot < usedPosition.slot ? usedPosition.wrapCounter : !usedPosition.wrapCounter
        return PackedRingPosition(slot: heldUsedSlot, wrapCounter: wrap)
    }

    /// Breaks the queue with `error` (STAT-DEV-02); see ``SplitDeviceQueue/fail(_:)``.
    @discardableResult
    public mutating func fail(_ error: VirtqueueError) -> VirtqueueError {
        if !broken {
            broken = true
            brokenBy = error
            epoch &+= 1
            inFlight.update(repeating: 0, count: count)
            pendingUsed = nil
            heldUsedSlot = -1
            // The unwritten batch stays in flight in the area: the driver never saw it.
            inflightTracker?.dropBatch()
            statusCell?.setNeedsReset()
        }
        return brokenBy ?? error
    }

    /// Returns the queue to its initial state: both positions to slot 0 with wrap counters 1
    /// (or the given values), nothing in flight, not broken (QRST-DEV-02).
    public mutating func reset(availPosition: PackedRingPosition, usedPosition: PackedRingPosition) {
        inFlight.update(repeating: 0, count: count)
        freeOverflow = arena.resetFreeStack()
        self.availPosition = availPosition.isValid(count: count) ? availPosition : .start
        self.usedPosition = usedPosition.isValid(count: count) ? usedPosition : .start
        signalledPosition = self.usedPosition
        pendingUsed = nil
        heldUsedSlot = -1
        epoch &+= 1
        broken = false
        brokenBy = nil
        // A reset queue no longer writes the area: what it forgets stays marked in flight there.
        inflightTracker = nil
        resubmit = []
        resubmitRemaining = 0
    }
}

/// An IN_ORDER batch of used buffers written as one used descriptor (PKD-DEF-08): where it
/// goes and what the last buffer reports.
@frozen @usableFromInline
struct PendingUsed {
    @usableFromInline var position: PackedRingPosition
    @usableFromInline var id: UInt16
    @usableFromInline var length: UInt32
    @usableFromInline var wrote: Bool
    /// Whether the last buffer was fully used, so that another may join the batch.
    @usableFromInline var full: Bool

    @inlinable
    init(position: PackedRingPosition, id: UInt16, length: UInt32, wrote: Bool, full: Bool) {
        self.position = position
        self.id = id
        self.length = length
        self.wrote = wrote
        self.full = full
    }
}
