/// One 8-byte `grant_entry_v1`: le16 flags, le16 domid, le32 frame.
@frozen
public struct GrantEntry: Hashable, Sendable {
    public var flags: GrantFlags
    public var domain: DomainID
    public var frame: UInt32

    @inlinable
    public init(flags: GrantFlags, domain: DomainID, frame: UInt32) {
        self.flags = flags
        self.domain = domain
        self.frame = frame
    }

    /// The entry from its little-endian 64-bit image.
    @inlinable
    init(word: UInt64) {
        let w = UInt64(littleEndian: word)
        flags = GrantFlags(rawValue: UInt16(truncatingIfNeeded: w))
        domain = DomainID(UInt16(truncatingIfNeeded: w &>> 16))
        frame = UInt32(truncatingIfNeeded: w &>> 32)
    }

    /// The little-endian 64-bit image.
    @inlinable
    var word: UInt64 { (UInt64(flags.rawValue) | UInt64(domain.rawValue) &<< 16 | UInt64(frame) &<< 32).littleEndian }

    /// The first 32 bits (flags and domid), which compare-and-swap operates on.
    @inlinable
    var header: UInt32 { UInt32(truncatingIfNeeded: UInt64(flags.rawValue) | UInt64(domain.rawValue) &<< 16).littleEndian }

    /// The size of an entry in the table.
    public static let size = 8
}
