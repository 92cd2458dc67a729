/// Flags of a packed-ring descriptor (VIRTIO 1.2 §2.8.1, §2.8.13).
@frozen
public struct PackedDescriptorFlags: OptionSet, Hashable, Sendable {
    public var rawValue: UInt16

    @inlinable
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    /// VIRTQ_DESC_F_NEXT (1): the list continues in the next slot.
    @inlinable public static var next: PackedDescriptorFlags { PackedDescriptorFlags(rawValue: 1) }
    /// VIRTQ_DESC_F_WRITE (2): device-writable (in a used descriptor: data was written).
    @inlinable public static var write: PackedDescriptorFlags { PackedDescriptorFlags(rawValue: 2) }
    /// VIRTQ_DESC_F_INDIRECT (4): the buffer is a table of packed descriptors.
    @inlinable public static var indirect: PackedDescriptorFlags { PackedDescriptorFlags(rawValue: 4) }
    /// VIRTQ_DESC_F_AVAIL (bit 7).
    @inlinable public static var avail: PackedDescriptorFlags { PackedDescriptorFlags(rawValue: 1 << 7) }
    /// VIRTQ_DESC_F_USED (bit 15).
    @inlinable public static var used: PackedDescriptorFlags { PackedDescriptorFlags(rawValue: 1 << 15) }

    /// The AVAIL and USED bits together.
    @inlinable static var ownership: UInt16 { 0x8080 }

    /// AVAIL and USED as the driver sets them to make a slot available in the lap with
    /// `wrapCounter`: AVAIL equal to it, USED its inverse (PKD-DEF-04).
    @inlinable
    public static func available(wrapCounter: Bool) -> PackedDescriptorFlags {
        wrapCounter ? .avail : .used
    }

    /// AVAIL and USED as the device sets them to mark a slot used in the lap with
    /// `wrapCounter`: both equal to it (PKD-DEF-04).
    @inlinable
    public static func used(wrapCounter: Bool) -> PackedDescriptorFlags {
        wrapCounter ? [.avail, .used] : []
    }

    /// Whether a slot with these flags is available in the driver's lap `wrapCounter`.
    @inlinable
    public func isAvailable(wrapCounter: Bool) -> Bool {
        rawValue & Self.ownership == Self.available(wrapCounter: wrapCounter).rawValue
    }

    /// Whether a slot with these flags is used in the device's lap `wrapCounter`.
    @inlinable
    public func isUsed(wrapCounter: Bool) -> Bool {
        rawValue & Self.ownership == Self.used(wrapCounter: wrapCounter).rawValue
    }
}

/// One 16-byte packed-ring descriptor: le64 addr, le32 len, le16 id, le16 flags
/// (VIRTIO 1.2 §2.8.13, PKD-DEF-03). Indirect tables hold the same layout (PKD-DEF-07).
@frozen
public struct PackedDescriptor: Hashable, Sendable {
    public var address: UInt64
    public var length: UInt32
    /// The buffer id: meaningful in the last descriptor of a list and in used descriptors.
    public var id: UInt16
    public var flags: PackedDescriptorFlags

    @inlinable
    public init(address: UInt64, length: UInt32, id: UInt16, flags: PackedDescriptorFlags) {
        self.address = address
        self.length = length
        self.id = id
        self.flags = flags
    }

    /// The descriptor from its two little-endian 64-bit words as they sit in memory.
    @inlinable
    init(word0: UInt64, word1: UInt64) {
        address = UInt64(littleEndian: word0)
        let w1 = UInt64(littleEndian: word1)
        length = UInt32(truncatingIfNeeded: w1)
        id = UInt16(truncatingIfNeeded: w1 &>> 32)
        flags = PackedDescriptorFlags(rawValue: UInt16(truncatingIfNeeded: w1 &>> 48))
    }

    /// The second 64-bit word in memory order: len, id, flags.
    @inlinable
    var word1: UInt64 {
        (UInt64(length) | UInt64(id) &<< 32 | UInt64(flags.rawValue) &<< 48).littleEndian
    }
}

/// What an event-suppression area asks of its reader (VIRTIO 1.2 §2.8.10, PKD-EVT-01).
@frozen
public enum PackedEventMode: Hashable, Sendable {
    /// RING_EVENT_FLAGS_ENABLE (0): notify on every event.
    case enable
    /// RING_EVENT_FLAGS_DISABLE (1): do not notify.
    case disable
    /// RING_EVENT_FLAGS_DESC (2): notify when the given position is made available or used.
    /// Only with EVENT_IDX (PKD-EVT-02).
    case descriptor(PackedRingPosition)

    /// The area's two words.
    @inlinable
    var words: (offWrap: UInt16, flags: UInt16) {
        switch self {
        case .enable: return (0, 0)
        case .disable: return (0, 1)
        case .descriptor(let p): return (p.rawValue, 2)
        }
    }

    /// The mode the area's words express; the reserved value 3 reads as `enable` (a reader
    /// that notifies too often is correct, one that never does can hang its peer).
    @inlinable
    init(offWrap: UInt16, flags: UInt16) {
        switch flags & 3 {
        case 1: self = .disable
        case 2: self = .descriptor(PackedRingPosition(rawValue: offWrap))
        default: self = .enable
        }
    }

    /// Whether a reader that moved its position from `old` to `new` (both in a ring of `count`
    /// slots, `moved` slots apart) owes a notification.
    ///
    /// For `.descriptor`, `vring_need_event` on slot numbers with the event moved back one lap
    /// when its wrap counter is not the reader's current one (the Linux driver's formula).
    @inlinable
    func needsNotification(new: PackedRingPosition, moved: Int, count: Int) -> Bool {
        switch self {
        case .disable: return false
        case .enable: return moved > 0
        case .descriptor(let event):
            guard moved > 0 else { return false }
            // A whole lap or more since the last decision passed every slot.
            guard moved < count else { return true }
            var e = UInt16(truncatingIfNeeded: event.slot)
            if event.wrapCounter != new.wrapCounter { e &-= UInt16(truncatingIfNeeded: count) }
            let n = UInt16(truncatingIfNeeded: new.slot)
            return EventIndex.needsNotification(event: e, new: n, old: n &- UInt16(truncatingIfNeeded: moved))
        }
    }
}
