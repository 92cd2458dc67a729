/// Sizes and alignments of the three areas of a packed virtqueue (VIRTIO 1.2 §2.8.10,
/// PKD-DEF-01, PKD-DEF-02).
@frozen
public struct PackedRingLayout: Hashable, Sendable {
    /// The queue size N: 1 to 32768, not necessarily a power of 2 (PKD-DEF-01).
    public let queueSize: UInt16

    /// The largest packed queue size: positions need 15 bits, the 16th is the wrap counter.
    public static let maximumQueueSize = 32768
    /// Required alignment of the descriptor ring (PKD-DRV-01).
    public static let descriptorRingAlignment = 16
    /// Required alignment of each event-suppression area (PKD-DRV-01).
    public static let eventAreaAlignment = 4
    /// The size of an event-suppression area: le16 off_wrap, le16 flags (PKD-EVT-01).
    public static let eventAreaSize = 4

    /// A layout for `queueSize`, or `nil` when it is not in 1...32768.
    @inlinable
    public init?(queueSize: Int) {
        guard Self.isValidQueueSize(queueSize) else { return nil }
        self.queueSize = UInt16(truncatingIfNeeded: queueSize)
    }

    /// Whether `size` is a legal packed queue size (PKD-DEF-01, TRN-M-04: non-zero).
    @inlinable
    public static func isValidQueueSize(_ size: Int) -> Bool { size >= 1 && size <= maximumQueueSize }

    /// The queue size as an `Int`.
    @inlinable
    public var count: Int { Int(queueSize) }

    /// 16·N bytes.
    @inlinable
    public var descriptorRingSize: Int { 16 &* count }

    /// Offsets of the three areas placed back to back in one block — descriptor ring, driver
    /// event area, device event area — and the block's total size.
    public var contiguousOffsets: (descriptorRing: Int, driverEventArea: Int, deviceEventArea: Int, totalSize: Int) {
        let driver = descriptorRingSize
        return (0, driver, driver + Self.eventAreaSize, driver + 2 * Self.eventAreaSize)
    }
}

/// The device-visible addresses of a packed queue's three areas.
///
/// vhost-user's SET_VRING_ADDR carries them in the split ring's fields: the descriptor ring as
/// `desc`, the driver event-suppression area as `avail`, the device area as `used`.
@frozen
public struct PackedRingAddresses: Hashable, Sendable {
    public var descriptorRing: UInt64
    public var driverEventArea: UInt64
    public var deviceEventArea: UInt64

    @inlinable
    public init(descriptorRing: UInt64, driverEventArea: UInt64, deviceEventArea: UInt64) {
        self.descriptorRing = descriptorRing
        self.driverEventArea = driverEventArea
        self.deviceEventArea = deviceEventArea
    }

    /// The addresses of a ring laid out by ``PackedRingLayout/contiguousOffsets`` at `base`.
    public init(contiguousAt base: UInt64, layout: PackedRingLayout) {
        let o = layout.contiguousOffsets
        self.init(descriptorRing: base + UInt64(o.descriptorRing), driverEventArea: base + UInt64(o.driverEventArea),
                  deviceEventArea: base + UInt64(o.deviceEventArea))
    }
}

/// A position in a packed ring with its wrap counter, in the `off_wrap` encoding of the
/// event-suppression areas and of vhost-user's packed vring base: bits 0–14 the slot, bit 15
/// the wrap counter (PKD-EVT-01).
@frozen
public struct PackedRingPosition: Hashable, Sendable {
    public var rawValue: UInt16

    @inlinable
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    @inlinable
    public init(slot: Int, wrapCounter: Bool) {
        rawValue = UInt16(truncatingIfNeeded: slot) | (wrapCounter ? 0x8000 : 0)
    }

    /// Slot 0 with the wrap counter at 1: where both sides start and restart after a reset
    /// (PKD-DEF-04, QRST-DEV-02).
    @inlinable
    public static var start: PackedRingPosition { PackedRingPosition(rawValue: 0x8000) }

    @inlinable
    public var slot: Int { Int(rawValue & 0x7FFF) }
    @inlinable
    public var wrapCounter: Bool { rawValue & 0x8000 != 0 }

    /// The position `n` slots further in a ring of `count` slots (`n` ≤ `count`): the wrap
    /// counter flips each time the slot passes the end (PKD-DEF-04).
    @inlinable @inline(__always)
    public func advanced(by n: Int, count: Int) -> PackedRingPosition {
        let s = Int(rawValue & 0x7FFF) &+ n
        if s >= count { return PackedRingPosition(rawValue: UInt16(truncatingIfNeeded: s &- count) | (~rawValue & 0x8000)) }
        return PackedRingPosition(rawValue: UInt16(truncatingIfNeeded: s) | (rawValue & 0x8000))
    }

    /// The position `n` slots back (`n` ≤ `count`; a list given back).
    @inlinable
    public func retreated(by n: Int, count: Int) -> PackedRingPosition {
        let s = Int(rawValue & 0x7FFF) &- n
        if s < 0 { return PackedRingPosition(rawValue: UInt16(truncatingIfNeeded: s &+ count) | (~rawValue & 0x8000)) }
        return PackedRingPosition(rawValue: UInt16(truncatingIfNeeded: s) | (rawValue & 0x8000))
    }

    /// How many slots lie from `earlier` to this position, at most `count` (the same slot in
    /// the other lap is a whole ring away; in the same lap, nothing).
    @inlinable
    public func distance(from earlier: PackedRingPosition, count: Int) -> Int {
        let d = slot &- earlier.slot
        if wrapCounter == earlier.wrapCounter { return d >= 0 ? d : d &+ 2 &* count }
        return d &+ count
    }

    /// Whether this is a legal position in a ring of `count` slots.
    @inlinable
    public func isValid(count: Int) -> Bool { slot < count }
}
