/// A device-visible address that names granted memory: the Linux grant-DMA encoding
/// (`drivers/xen/grant-dma-ops.c`): bit 63 set, the grant reference in bits 62–12 and the
/// byte offset within the 4 KiB page in bits 11–0. A buffer that crosses a page continues in
/// the next grant reference (Spec/transport.md §6).
@frozen
public struct GrantHandle: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt64

    /// Grants are per 4 KiB page, whatever the guest's page size (Xen's XEN_PAGE_SIZE).
    public static let pageSize = 4096
    /// The marker bit that tells a grant handle from any other address.
    public static let marker: UInt64 = 1 << 63

    @inlinable
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    /// The handle of byte `offset` of the page granted by `reference`.
    @inlinable
    public init(reference: GrantReference, offset: Int = 0) {
        precondition(offset >= 0 && offset < Self.pageSize)
        rawValue = Self.marker | UInt64(reference.rawValue) &<< 12 | UInt64(offset)
    }

    /// Whether the marker bit is set (otherwise the address is not a grant handle).
    @inlinable
    public var isGrantHandle: Bool { rawValue & Self.marker != 0 }

    /// The grant reference (bits 62–12); `nil` if the value does not fit a 32-bit reference.
    @inlinable
    public var reference: GrantReference? {
        let r = (rawValue & ~Self.marker) &>> 12
        return r <= UInt64(UInt32.max) ? GrantReference(UInt32(truncatingIfNeeded: r)) : nil
    }

    /// The byte offset within the page (bits 11–0).
    @inlinable
    public var offset: Int { Int(truncatingIfNeeded: rawValue & 0xFFF) }

    /// The handle `n` bytes further on, continuing into following references across pages.
    @inlinable
    public func advanced(by n: Int) -> GrantHandle { GrantHandle(rawValue: rawValue &+ UInt64(n)) }

    /// The number of pages (references) that `[self, self + length)` touches.
    @inlinable
    public func pageCount(length: Int) -> Int { (offset + length + Self.pageSize - 1) / Self.pageSize }

    public var description: String {
        guard isGrantHandle, let r = reference else { return "not-a-grant(0x\(String(rawValue, radix: 16)))" }
        return "\(r)+\(offset)"
    }
}
