/// Where a device queue stands, as a plain value apart from the memory it points into (as
/// rust-vmm's virtio-queue keeps `QueueState` apart from `GuestMemory`): the ring's format,
/// size and area addresses as data, the next positions the device reads and writes (with the
/// packed ring's wrap counters) and whether event-index suppression is on.
///
/// A queue saves itself with ``SplitDeviceQueue/state`` or ``PackedDeviceQueue/state`` and
/// resumes from a value with `restore(_:)` or `init(state:memory:features:)`: reset
/// (QRST-DEV-02), vhost-user's GET/SET_VRING_BASE (through ``vhostUserBase``) and a scheduler
/// switching a device between guests all go through it (GHT-QST-01..05).
///
/// The value holds no pointer and no chain in flight: chains popped and not completed when it
/// was taken are not in it. A state taken where nothing is in flight resumes exactly.
@frozen
public struct QueueState: Hashable, Sendable {
    /// The ring layout (VIRTIO 1.2 §2.7 split, §2.8 packed).
    public enum Format: String, Hashable, Sendable {
        case split, packed
    }

    /// The ring format.
    public var format: Format
    /// The queue size N the driver chose.
    public var size: Int
    /// The device-visible address of the Descriptor Area (§2.6): the split descriptor table or
    /// the packed descriptor ring. 0 when the queue was set up over host memory directly.
    public var descriptorArea: UInt64
    /// The Driver Area: the split available ring or the packed driver event-suppression area.
    public var driverArea: UInt64
    /// The Device Area: the split used ring or the packed device event-suppression area.
    public var deviceArea: UInt64
    /// Split: the next available-ring index to read (free-running, mod 2^16). Packed: the
    /// next slot to pop (below ``size``).
    public var nextAvail: UInt16
    /// Split: the next used index to write (free-running). Packed: the next slot to write a
    /// used descriptor to (below ``size``).
    public var nextUsed: UInt16
    /// Packed: the driver's wrap counter the device expects at ``nextAvail``. Split: `true`.
    public var availWrapCounter: Bool
    /// Packed: the device's wrap counter at ``nextUsed``. Split: `true`.
    public var usedWrapCounter: Bool
    /// Whether VIRTIO_F_EVENT_IDX was negotiated (§2.7.10, §2.8.10).
    public var eventIndex: Bool

    /// A state at the ring's start (both positions 0, wrap counters 1): where a queue begins
    /// and where a reset returns it (QRST-DEV-02).
    public init(format: Format, size: Int, descriptorArea: UInt64 = 0, driverArea: UInt64 = 0, deviceArea: UInt64 = 0,
                nextAvail: UInt16 = 0, nextUsed: UInt16 = 0, availWrapCounter: Bool = true, usedWrapCounter: Bool = true,
                eventIndex: Bool = false) {
        self.format = format
        self.size = size
        self.descriptorArea = descriptorArea
        self.driverArea = driverArea
        self.deviceArea = deviceArea
        self.nextAvail = nextAvail
        self.nextUsed = nextUsed
        self.availWrapCounter = availWrapCounter
        self.usedWrapCounter = usedWrapCounter
        self.eventIndex = eventIndex
    }

    /// The same queue at its start: positions 0, wrap counters 1, the rest kept.
    public var initial: QueueState {
        var s = self
        s.nextAvail = 0
        s.nextUsed = 0
        s.availWrapCounter = true
        s.usedWrapCounter = true
        return s
    }

    /// Packed: the next slot to pop with its wrap counter.
    public var availPosition: PackedRingPosition {
        get { PackedRingPosition(slot: Int(nextAvail), wrapCounter: availWrapCounter) }
        set { nextAvail = UInt16(newValue.slot); availWrapCounter = newValue.wrapCounter }
    }

    /// Packed: the next used slot with its wrap counter.
    public var usedPosition: PackedRingPosition {
        get { PackedRingPosition(slot: Int(nextUsed), wrapCounter: usedWrapCounter) }
        set { nextUsed = UInt16(newValue.slot); usedWrapCounter = newValue.wrapCounter }
    }

    /// Split: the ring areas' addresses.
    public var splitAddresses: SplitRingAddresses {
        SplitRingAddresses(descriptorTable: descriptorArea, availRing: driverArea, usedRing: deviceArea)
    }

    /// Packed: the ring areas' addresses.
    public var packedAddresses: PackedRingAddresses {
        PackedRingAddresses(descriptorRing: descriptorArea, driverEventArea: driverArea, deviceEventArea: deviceArea)
    }

    /// Checks the value on its own: a legal size for the format (SPL-DEF-01, PKD-DEF-01), and
    /// for a packed ring both slots below the size (GHT-QST-02).
    public func validate() throws(QueueStateError) {
        switch format {
        case .split:
            guard SplitRingLayout(queueSize: size) != nil else { throw .invalidSize(size) }
            guard availWrapCounter, usedWrapCounter else { throw .wrapCounterOnSplitRing }
        case .packed:
            guard PackedRingLayout.isValidQueueSize(size) else { throw .invalidSize(size) }
            guard Int(nextAvail) < size else { throw .positionBeyondSize(nextAvail, size: size) }
            guard Int(nextUsed) < size else { throw .positionBeyondSize(nextUsed, size: size) }
        }
    }

    /// Whether `other` describes the same ring (format, size, areas, event index), whatever the
    /// positions: what a queue requires of a state it restores over its own memory.
    public func isSameRing(as other: QueueState) -> Bool {
        format == other.format && size == other.size && descriptorArea == other.descriptorArea
            && driverArea == other.driverArea && deviceArea == other.deviceArea && eventIndex == other.eventIndex
    }
}

/// Why a ``QueueState`` cannot be used.
public enum QueueStateError: Error, Hashable, Sendable {
    /// The size is not legal for the format.
    case invalidSize(Int)
    /// A packed position names a slot at or beyond the queue size.
    case positionBeyondSize(UInt16, size: Int)
    /// A split ring has no wrap counters: both must be 1.
    case wrapCounterOnSplitRing
    /// A split ring's vhost-user base has bits above 15 set.
    case splitBaseBeyond16Bits(UInt32)
    /// The state is another ring's (format, size, areas or event index differ from the queue's).
    case differentRing
    /// The ring areas named by the state cannot be set up.
    case setup(RingSetupError)
}
