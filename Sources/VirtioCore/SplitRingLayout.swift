/// Sizes and alignments of the three areas of a split virtqueue (VIRTIO 1.2 §2.7, SPL-DEF-02).
@frozen
public struct SplitRingLayout: Hashable, Sendable {
    /// The queue size N: a power of 2 between 1 and 32768 (SPL-DEF-01).
    public let queueSize: UInt16

    /// The largest split queue size VIRTIO allows.
    public static let maximumQueueSize = 32768
    /// Required alignment of the descriptor table (SPL-DRV-01).
    public static let descriptorTableAlignment = 16
    /// Required alignment of the available ring (SPL-DRV-01).
    public static let availRingAlignment = 2
    /// Required alignment of the used ring (SPL-DRV-01).
    public static let usedRingAlignment = 4

    /// A layout for `queueSize`, or `nil` when the size is not a power of 2 in 1...32768.
    @inlinable
    public init?(queueSize: Int) {
        guard Self.isValidQueueSize(queueSize) else { return nil }
        self.queueSize = UInt16(truncatingIfNeeded: queueSize)
    }

    /// Whether `size` is a legal split queue size (SPL-DEF-01, TRN-M-04).
    @inlinable
    public static func isValidQueueSize(_ size: Int) -> Bool {
        size >= 1 && size <= maximumQueueSize && size & (size - 1) == 0
    }

    /// The queue size as an `Int`.
    @inlinable
    public var count: Int { Int(queueSize) }

    /// 16·N bytes.
    @inlinable
    public var descriptorTableSize: Int { 16 * count }
    /// 6 + 2·N bytes: flags, idx, ring[N], used_event.
    @inlinable
    public var availRingSize: Int { 6 + 2 * count }
    /// 6 + 8·N bytes: flags, idx, ring[N] of {id, len}, avail_event.
    @inlinable
    public var usedRingSize: Int { 6 + 8 * count }

    /// Offsets of the three areas when placed back to back in one block, each aligned as
    /// required, and the block's total size.
    public var contiguousOffsets: (descriptorTable: Int, availRing: Int, usedRing: Int, totalSize: Int) {
        let avail = descriptorTableSize
        let used = (avail + availRingSize + Self.usedRingAlignment - 1) & ~(Self.usedRingAlignment - 1)
        return (0, avail, used, used + usedRingSize)
    }
}

/// The device-visible addresses of a split queue's three areas, as the driver configures them.
@frozen
public struct SplitRingAddresses: Hashable, Sendable {
    public var descriptorTable: UInt64
    public var availRing: UInt64
    public var usedRing: UInt64

    @inlinable
    public init(descriptorTable: UInt64, availRing: UInt64, usedRing: UInt64) {
        self.descriptorTable = descriptorTable
        self.availRing = availRing
        self.usedRing = usedRing
    }

    /// The addresses of a ring laid out by ``SplitRingLayout/contiguousOffsets`` at `base`.
    public init(contiguousAt base: UInt64, layout: SplitRingLayout) {
        let o = layout.contiguousOffsets
        self.init(descriptorTable: base + UInt64(o.descriptorTable), availRing: base + UInt64(o.availRing),
                  usedRing: base + UInt64(o.usedRing))
    }
}
