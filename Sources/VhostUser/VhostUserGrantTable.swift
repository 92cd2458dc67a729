import VirtioGrants

/// The SET_GRANT_TABLE payload (Spec/vhost-user.md §4, this transport's extension; 40 bytes):
///
/// | offset | field |
/// |---|---|
/// | 0 | le16 granter domid |
/// | 2 | le16 grantee domid |
/// | 4 | le32 flags (0) |
/// | 8 | le64 table mmap size, bytes |
/// | 16 | le64 table mmap offset |
/// | 24 | le64 frames region guest address |
/// | 32 | le64 frame count |
///
/// One file descriptor travels with it: the memfd holding the front-end's table of
/// `grant_entry_v1` (Spec/transport.md §6.1). Frame `n` of a grant entry is the 4 KiB page at
/// `framesGuestAddress + n × 4096`, inside the memory-table region that starts at that address.
@frozen
public struct VhostUserGrantTable: Hashable, Sendable {
    /// The domain that grants (the front-end): entries are its grants.
    public var granter: DomainID
    /// The domain the back-end maps as: only entries naming it are usable.
    public var grantee: DomainID
    /// Bytes of the table to map; a multiple of the 8-byte entry.
    public var tableSize: UInt64
    /// Where the table starts in its file; 4 KiB-aligned so it can be mapped directly.
    public var tableOffset: UInt64
    /// `guest_phys_addr` of the memory-table region whose first page is frame 0.
    public var framesGuestAddress: UInt64
    /// Frames (4 KiB pages) a grant may name: 0 ..< frameCount.
    public var frameCount: UInt64

    /// Bytes of the payload.
    public static let byteCount = 40
    /// Bytes of one `grant_entry_v1`.
    public static let entryByteCount: UInt64 = 8
    /// The page size of frames and of the table offset.
    public static let pageSize: UInt64 = 4096
    /// Xen's `DOMID_FIRST_RESERVED` (0x7FF0): DOMID_SELF, DOMID_IO, ... start here.
    public static let firstReservedDomain: UInt16 = 0x7FF0
    /// References are 32 bits, so a table has at most 2^32 entries.
    public static let maximumTableSize: UInt64 = (1 << 32) * entryByteCount

    @inlinable
    public init(granter: DomainID, grantee: DomainID, tableSize: UInt64, tableOffset: UInt64,
                framesGuestAddress: UInt64, frameCount: UInt64) {
        self.granter = granter
        self.grantee = grantee
        self.tableSize = tableSize
        self.tableOffset = tableOffset
        self.framesGuestAddress = framesGuestAddress
        self.frameCount = frameCount
    }

    /// The number of entries in the table.
    public var entryCount: UInt64 { tableSize / Self.entryByteCount }

    /// The 40 payload bytes; flags are 0.
    public func encoded() -> [UInt8] {
        var w = VhostUserWriter(capacity: Self.byteCount)
        w.u16(granter.rawValue)
        w.u16(grantee.rawValue)
        w.u32(0)
        w.u64(tableSize)
        w.u64(tableOffset)
        w.u64(framesGuestAddress)
        w.u64(frameCount)
        return w.bytes
    }

    /// GHT-VU-15 (all but the flags word, which this type cannot hold).
    public func validate() throws(VhostUserProtocolError) {
        func fail(_ defect: VhostUserProtocolError.GrantTableDefect) -> VhostUserProtocolError { .invalidGrantTable(defect) }
        for domain in [granter, grantee] where domain.rawValue >= Self.firstReservedDomain { throw fail(.reservedDomain(domain)) }
        guard granter != grantee else { throw fail(.sameDomain(granter)) }
        guard tableSize > 0, tableSize % Self.entryByteCount == 0, tableSize <= Self.maximumTableSize else {
            throw fail(.tableSize(tableSize))
        }
        guard tableOffset % Self.pageSize == 0, VhostUserRange.fitsFileOffset(offset: tableOffset, length: tableSize) else {
            throw fail(.tableOffset(tableOffset))
        }
        guard framesGuestAddress % Self.pageSize == 0 else { throw fail(.framesAddress(framesGuestAddress)) }
        // Frames are numbered by a 32-bit field; their pages must end at or below 2^64.
        guard frameCount > 0, frameCount <= 1 << 32,
              frameCount - 1 <= (UInt64.max - framesGuestAddress) / Self.pageSize else {
            throw fail(.frameCount(frameCount))
        }
    }

    /// Decodes and validates a 40-byte payload (size checked by the caller).
    package static func decode(_ payload: [UInt8]) throws(VhostUserProtocolError) -> VhostUserGrantTable {
        var r = VhostUserReader(payload)
        let granter = DomainID(r.u16()), grantee = DomainID(r.u16())
        let flags = r.u32()
        guard flags == 0 else { throw .invalidGrantTable(.flags(flags)) }
        let table = VhostUserGrantTable(granter: granter, grantee: grantee, tableSize: r.u64(), tableOffset: r.u64(),
                                        framesGuestAddress: r.u64(), frameCount: r.u64())
        try table.validate()
        return table
    }
}

/// The REVOKE_GRANTS payload (Spec/vhost-user.md §4): le32 first reference, le32 count — 8
/// bytes, no file descriptor. It asks the back-end to stop mapping the references
/// `first ..< first + count` and drop its cached mappings of them (Spec/transport.md §6.3).
@frozen
public struct VhostUserGrantRange: Hashable, Sendable {
    public var first: GrantReference
    /// At least 1; `first + count` is at most 2^32.
    public var count: UInt32

    /// Bytes of the payload.
    public static let byteCount = 8

    @inlinable
    public init(first: GrantReference, count: UInt32) {
        self.first = first
        self.count = count
    }

    /// True if `reference` is in the range.
    public func contains(_ reference: GrantReference) -> Bool {
        reference >= first && reference.rawValue - first.rawValue < count
    }

    public func encoded() -> [UInt8] {
        var w = VhostUserWriter(capacity: Self.byteCount)
        w.u32(first.rawValue)
        w.u32(count)
        return w.bytes
    }

    /// GHT-VU-16: at least one reference, and the last one is at most 2^32 − 1.
    public func validate() throws(VhostUserProtocolError) {
        guard count > 0, count - 1 <= UInt32.max - first.rawValue else {
            throw .invalidGrantRange(first: first.rawValue, count: count)
        }
    }

    /// Decodes and validates an 8-byte payload (size checked by the caller).
    package static func decode(_ payload: [UInt8]) throws(VhostUserProtocolError) -> VhostUserGrantRange {
        var r = VhostUserReader(payload)
        let range = VhostUserGrantRange(first: GrantReference(r.u32()), count: r.u32())
        try range.validate()
        return range
    }
}
