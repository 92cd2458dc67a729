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
