import Synchronization
import VirtioCore

/// A domain identifier (Xen `domid_t`): who grants and who is granted.
@frozen
public struct DomainID: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: UInt16
    @inlinable public init(rawValue: UInt16) { self.rawValue = rawValue }
    @inlinable public init(_ value: UInt16) { rawValue = value }
    public var description: String { "dom\(rawValue)" }
    @inlinable public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
}

/// An index into a grant table (Xen `grant_ref_t`).
@frozen
public struct GrantReference: RawRepresentable, Hashable, Sendable, Comparable, CustomStringConvertible {
    public var rawValue: UInt32
    @inlinable public init(rawValue: UInt32) { self.rawValue = rawValue }
    @inlinable public init(_ value: UInt32) { rawValue = value }
    @inlinable public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
    /// The reference `n` entries after this one.
    @inlinable public func advanced(by n: Int) -> GrantReference { GrantReference(rawValue &+ UInt32(truncatingIfNeeded: n)) }
    public var description: String { "gref\(rawValue)" }

    /// Entries 0–7 are reserved (Xen `GNTTAB_NR_RESERVED_ENTRIES`: console, xenstore, ...) and
    /// never handed out.
    public static let reservedCount = 8
}

/// The flags of a v1 grant entry, with Xen's values (`GTF_*`, include/xen/interface/grant_table.h).
@frozen
public struct GrantFlags: OptionSet, Hashable, Sendable {
    public var rawValue: UInt16
    @inlinable public init(rawValue: UInt16) { self.rawValue = rawValue }

    /// Type mask (bits 0–1).
    @inlinable public static var typeMask: GrantFlags { GrantFlags(rawValue: 3) }
    /// GTF_permit_access (type 1): the named domain may map or copy the frame.
    @inlinable public static var permitAccess: GrantFlags { GrantFlags(rawValue: 1) }
    /// GTF_accept_transfer (type 2); not used by this transport.
    @inlinable public static var acceptTransfer: GrantFlags { GrantFlags(rawValue: 2) }
    /// GTF_transitive (type 3); not supported (transitive grants are a recurring bug class).
    @inlinable public static var transitive: GrantFlags { GrantFlags(rawValue: 3) }
    /// GTF_readonly (0x4): set by the granter; the grantee may only read.
    @inlinable public static var readOnly: GrantFlags { GrantFlags(rawValue: 0x4) }
    /// GTF_reading (0x8): set by the mapping side while the grantee has the frame mapped for reading.
    @inlinable public static var reading: GrantFlags { GrantFlags(rawValue: 0x8) }
    /// GTF_writing (0x10): set by the mapping side while the grantee has the frame mapped for writing.
    @inlinable public static var writing: GrantFlags { GrantFlags(rawValue: 0x10) }
    /// GTF_sub_page (0x100): a v2 feature; refused in v1 entries.
    @inlinable public static var subPage: GrantFlags { GrantFlags(rawValue: 0x100) }

    /// The in-use bits, which only the mapping side sets and clears.
    @inlinable public static var inUse: GrantFlags { [.reading, .writing] }
}

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

/// The grant table in shared memory: the unsafe core that reads and writes entries.
///
/// A mapper reads an entry as one 64-bit atomic load, so every decision is taken on a single
/// snapshot; both sides change the flags with a 32-bit compare-and-swap of flags and domid
/// together, so a map and an end-of-access that race on one entry cannot both succeed.
@frozen
public struct UnsafeGrantTable: @unchecked Sendable {
    @usableFromInline let base: UnsafeMutableRawPointer
    /// The number of entries.
    public let count: Int

    /// A view of the entries in `range` (8-byte aligned).
    public init(_ range: HostRange) {
        precondition(range.isAligned(to: 8), "a grant table must be 8-byte aligned")
        var base: UnsafeMutableRawPointer?
        range.withUnsafeMutableBytes { base = $0.baseAddress }
        self.base = base ?? UnsafeMutableRawPointer(bitPattern: 8)!
        count = range.count / GrantEntry.size
    }

    @inlinable
    func word(_ ref: Int) -> UnsafeMutablePointer<Atomic<UInt64>> {
        (base + ref &* GrantEntry.size).assumingMemoryBound(to: Atomic<UInt64>.self)
    }

    @inlinable
    func header(_ ref: Int) -> UnsafeMutablePointer<Atomic<UInt32>> {
        (base + ref &* GrantEntry.size).assumingMemoryBound(to: Atomic<UInt32>.self)
    }

    /// One acquire load of the whole entry.
    @inlinable
    public func load(_ ref: GrantReference) -> GrantEntry {
        precondition(Int(ref.rawValue) < count)
        return GrantEntry(word: word(Int(ref.rawValue)).pointee.load(ordering: .acquiring))
    }

    /// Publishes a whole entry with release ordering (the granter writes domid and frame
    /// before the flags become visible, Xen's publication rule).
    @inlinable
    public func store(_ entry: GrantEntry, at ref: GrantReference) {
        precondition(Int(ref.rawValue) < count)
        word(Int(ref.rawValue)).pointee.store(entry.word, ordering: .releasing)
    }

    /// Replaces flags and domid if they still equal `expected`'s; returns the value found.
    @inlinable
    func compareExchangeHeader(_ ref: GrantReference, expected: GrantEntry, desired: GrantEntry) -> (exchanged: Bool, found: GrantEntry) {
        let r = header(Int(ref.rawValue)).pointee.compareExchange(expected: expected.header, desired: desired.header,
                                                                  ordering: .acquiringAndReleasing)
        let h = UInt32(littleEndian: r.original)
        return (r.exchanged, GrantEntry(flags: GrantFlags(rawValue: UInt16(truncatingIfNeeded: h)),
                                        domain: DomainID(UInt16(truncatingIfNeeded: h &>> 16)), frame: expected.frame))
    }
}
