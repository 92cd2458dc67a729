/// The device (back-end) side of a split virtqueue (VIRTIO 1.2 §2.7).
///
/// The queue trusts nothing in shared memory. It pops chains with acquire ordering, reads
/// every descriptor exactly once into a private segment arena, and validates indices,
/// loops, lengths and the indirect rules while it walks. The first violation breaks the
/// queue: the error is kept and thrown again by every later call, and DEVICE_NEEDS_RESET is
/// set in the device's status cell. Other queues are independent values and keep working.
///
/// Generic over the translator, so grant handles, IOVAs and guest-physical addresses share
/// one specialized hot path (DESIGN §5).
public struct SplitDeviceQueue<Memory: MemoryTranslator>: ~Copyable, @unchecked Sendable {
    /// Size and layout of the ring.
    public let layout: SplitRingLayout
    /// The ring areas, translated once at setup.
    public let ring: SplitRing
    /// The translator for buffer addresses.
    public let memory: Memory
    /// The features negotiated for the device.
    public let features: VirtioFeatures

    @usableFromInline let mask: Int
    @usableFromInline let eventIndexEnabled: Bool
    @usableFromInline let indirectEnabled: Bool
    @usableFromInline let statusCell: DeviceStatusCell?
    @usableFromInline let storage: UnsafeAllocation
    /// Per head: ``inFlightTag(_:)`` of the epoch it was popped in while in flight, 0 otherwise.
    /// A reset or a failure clears every tag.
    @usableFromInline let inFlight: UnsafeMutablePointer<UInt32>
    @usableFromInline let arena: UnsafeSegmentArena
    /// The ring areas' device-visible addresses (zero when set up over host memory directly),
    /// kept as data for ``state``.
    @usableFromInline let areas: SplitRingAddresses

    /// The position in the available ring, `avail.idx` as last read and its limit.
    @usableFromInline var availCursor: RingCursor
    @usableFromInline var usedIndex: UInt16
    @usableFromInline var signalledUsed: UInt16
    @usableFromInline var freeOverflow: Int
    @usableFromInline var epoch: UInt32 = 0
    @usableFromInline var broken: Bool = false
    @usableFromInline var availBase: UInt16
    @usableFromInline var usedBase: UInt16
    @usableFromInline var brokenBy: VirtqueueError?
    /// Set when a pop stopped at an indirect table that is not mapped yet (GHT-IOVA-06).
    @usableFromInline var mappingMiss: TranslationFault?
    /// The in-flight area kept current, once ``trackInflight(in:)`` attached one (GHT-INF-05).
    @usableFromInline var inflightTracker: InflightSplitTracker?
    /// Heads to resubmit before any new chain (GHT-INF-08), and how many are left (from the end
    /// of the list's front: `resubmit[resubmit.count - resubmitRemaining]` is next).
    @usableFromInline var resubmit: [UInt16] = []
    @usableFromInline var resubmitRemaining = 0
    /// The available position when the last resubmitted chain was popped: while the ring has
    /// not moved since, that chain was the last popped (``giveBack(_:)`` returns it to the list).
    @usableFromInline var resubmitPoppedAt: UInt16?
    /// The next available-ring position to pop.
    @inlinable
    var lastAvail: UInt16 { availCursor.next }
    /// The in-flight tag of chains popped in `epoch`: never 0.
    @inlinable
    static func inFlightTag(_ epoch: UInt32) -> UInt32 { epoch &<< 1 | 1 }

    /// The number of popped chains not yet completed: each pop moves the available position
    /// and each completion the used position by one.
    @inlinable
    public var inFlightCount: Int { Int((lastAvail &- availBase) &- (usedIndex &- usedBase)) }
    /// The error that broke the queue, if any.
    public var failure: VirtqueueError? { brokenBy }

    /// Sets up the device side over ring areas at `addresses`, translated once through `memory`.
    ///
    /// - Parameters:
    ///   - queueSize: the size the driver chose; a power of 2 up to 32768.
    ///   - features: the negotiated features (INDIRECT_DESC and EVENT_IDX matter here).
    ///   - statusCell: where DEVICE_NEEDS_RESET is set when the queue breaks.
    ///   - nextAvailIndex: where to resume in the available ring (vhost-user SET_VRING_BASE).
    ///   - usedIndex: where to resume in the used ring.
    ///   - overflowBlocks: arena blocks for chains longer than four segments (default: two
    ///     chains of queue size).
    public init(queueSize: Int, addresses: SplitRingAddresses, memory: Memory, features: VirtioFeatures,
                statusCell: DeviceStatusCell? = nil, nextAvailIndex: UInt16 = 0, usedIndex: UInt16 = 0,
                overflowBlocks: Int? = nil) throws(RingSetupError) {
        guard let layout = SplitRingLayout(queueSize: queueSize) else { throw .invalidQueueSize(queueSize) }
        let ring = try SplitRing(layout: layout, addresses: addresses, memory: memory)
        self.init(ring: ring, areas: addresses, memory: memory, features: features, statusCell: statusCell,
                  nextAvailIndex: nextAvailIndex, usedIndex: usedIndex, overflowBlocks: overflowBlocks)
    }

    /// Sets up the device side over an already resolved ring.
    public init(ring: SplitRing, memory: Memory, features: VirtioFeatures, statusCell: DeviceStatusCell? = nil,
                nextAvailIndex: UInt16 = 0, usedIndex: UInt16 = 0, overflowBlocks: Int? = nil) {
        self.init(ring: ring, areas: SplitRingAddresses(descriptorTable: 0, availRing: 0, usedRing: 0), memory: memory,
                  features: features, statusCell: statusCell, nextAvailIndex: nextAvailIndex, usedIndex: usedIndex,
                  overflowBlocks: overflowBlocks)
    }

    init(ring: SplitRing, areas: SplitRingAddresses, memory: Memory, features: VirtioFeatures, statusCell: DeviceStatusCell?,
         nextAvailIndex: UInt16, usedIndex: UInt16, overflowBlocks: Int?) {
        let n = ring.layout.count
        let overflow = max(overflowBlocks ?? UnsafeSegmentArena.defaultOverflowBlocks(queueSize: n), 1)
        var plan = AllocationPlan()
        let inFlightOffset = plan.reserve(UInt32.self, count: n)
        let arenaOffsets = UnsafeSegmentArena.plan(&plan, queueSize: n, overflowBlocks: overflow)
        storage = UnsafeAllocation(plan)
        inFlight = storage.carve(UInt32.self, at: inFlightOffset, count: n)
        arena = UnsafeSegmentArena(allocation: storage, offsets: arenaOffsets, queueSize: n, overflowBlocks: overflow)
        freeOverflow = arena.resetFreeStack()
        layout = ring.layout
        self.ring = ring
        self.areas = areas
        self.memory = memory
        self.features = features
        self.statusCell = statusCell
        mask = n - 1
        eventIndexEnabled = features.contains(.eventIndex)
        indirectEnabled = features.contains(.indirectDescriptors)
        availCursor = RingCursor(position: nextAvailIndex, limit: ring.layout.queueSize)
        availBase = nextAvailIndex
        self.usedIndex = usedIndex
        usedBase = usedIndex
        signalledUsed = usedIndex
    }

    /// The index of the next available-ring entry the device will read (vhost-user GET_VRING_BASE).
    public var nextAvailIndex: UInt16 { lastAvail }
    /// The used index the device has written so far (published or not).
    public var nextUsedIndex: UInt16 { usedIndex }
    /// Whether a violation has broken the queue.
    public var isBroken: Bool { broken }

    /// Chains the driver has published that the device has not popped yet (reads `avail.idx`).
    public var pendingCount: Int { Int(ring.availRing.loadIndex() &- lastAvail) }

    /// Breaks the queue with `error`: keeps it, sets DEVICE_NEEDS_RESET (STAT-DEV-02) and
    /// returns it for throwing. A device calls this when processing a chain met a fault.
    ///
    /// Chains in flight are dropped (their epoch is over) and later pops rethrow the error.
    @discardableResult
    public mutating func fail(_ error: VirtqueueError) -> VirtqueueError {
        if !broken {
            broken = true
            brokenBy = error
            epoch &+= 1
            inFlight.update(repeating: 0, count: layout.count)
            availCursor = availCursor.closed()
            statusCell?.setNeedsReset()
        }
        return brokenBy ?? error
    }

    /// Returns the queue to its initial state: indices to zero (or the given values), nothing
    /// in flight, not broken (QRST-DEV-02). Chains popped before the reset are forgotten;
    /// completing them afterwards does nothing.
    public mutating func reset(nextAvailIndex: UInt16, usedIndex: UInt16) {
        inFlight.initialize(repeating: 0, count: layout.count)
        freeOverflow = arena.resetFreeStack()
        availCursor = RingCursor(position: nextAvailIndex, limit: layout.queueSize)
        availBase = nextAvailIndex
        self.usedIndex = usedIndex
        usedBase = usedIndex
        signalledUsed = usedIndex
        epoch &+= 1
        broken = false
        brokenBy = nil
        // A reset queue no longer writes the area: what it forgets stays marked in flight there.
        inflightTracker = nil
        resubmit = []
        resubmitRemaining = 0
    }
}
