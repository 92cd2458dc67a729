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
