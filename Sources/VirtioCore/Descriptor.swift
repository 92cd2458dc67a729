/// Flags of a split-ring descriptor (VIRTIO 1.2 §2.7.5).
@frozen
public struct DescriptorFlags: OptionSet, Hashable, Sendable {
    public var rawValue: UInt16

    @inlinable
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    /// VIRTQ_DESC_F_NEXT (1): the buffer continues in the descriptor named by `next`.
    @inlinable public static var next: DescriptorFlags { DescriptorFlags(rawValue: 1) }
    /// VIRTQ_DESC_F_WRITE (2): the buffer is device-writable (otherwise device-readable).
    @inlinable public static var write: DescriptorFlags { DescriptorFlags(rawValue: 2) }
    /// VIRTQ_DESC_F_INDIRECT (4): the buffer holds an indirect descriptor table.
    @inlinable public static var indirect: DescriptorFlags { DescriptorFlags(rawValue: 4) }
}

/// One 16-byte split-ring descriptor: le64 addr, le32 len, le16 flags, le16 next
/// (VIRTIO 1.2 §2.7.5, SPL-DEF-03).
///
/// `address` is whatever the device resolves through its translator: a guest-physical
/// address, a grant handle or an IOVA, depending on the negotiated mode.
@frozen
public struct Descriptor: Hashable, Sendable {
    public var address: UInt64
    public var length: UInt32
    public var flags: DescriptorFlags
    public var next: UInt16

    /// The size of a descriptor in the table.
    @inlinable public static var size: Int { 16 }

    @inlinable
    public init(address: UInt64, length: UInt32, flags: DescriptorFlags = [], next: UInt16 = 0) {
        self.address = address
        self.length = length
        self.flags = flags
        self.next = next
    }

    /// The descriptor from its two little-endian 64-bit words as they sit in memory.
    @inlinable
    init(word0: UInt64, word1: UInt64) {
        address = UInt64(littleEndian: word0)
        let w1 = UInt64(littleEndian: word1)
        length = UInt32(truncatingIfNeeded: w1)
        flags = DescriptorFlags(rawValue: UInt16(truncatingIfNeeded: w1 &>> 32))
        next = UInt16(truncatingIfNeeded: w1 &>> 48)
    }

    /// The second 64-bit word in memory order: len, flags, next.
    @inlinable
    var word1: UInt64 {
        (UInt64(length) | UInt64(flags.rawValue) &<< 32 | UInt64(next) &<< 48).littleEndian
    }
}

/// A guest buffer a driver places in a chain: a device-visible address and a length.
@frozen
public struct BufferSegment: Hashable, Sendable {
    /// The device-visible address (guest-physical, grant handle or IOVA).
    public var address: UInt64
    public var length: UInt32

    @inlinable
    public init(address: UInt64, length: UInt32) {
        self.address = address
        self.length = length
    }
}

/// One element of the used ring: the head of a chain and the bytes written into it
/// (VIRTIO 1.2 §2.7.8, USD-DEF-01).
@frozen
public struct UsedElement: Hashable, Sendable {
    public var id: UInt32
    public var length: UInt32

    @inlinable
    public init(id: UInt32, length: UInt32) {
        self.id = id
        self.length = length
    }
}
