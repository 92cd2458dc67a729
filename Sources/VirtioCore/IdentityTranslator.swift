/// The guest-physical translator: device-visible addresses are offsets into one region of
/// guest memory starting at `guestBase` (ACCESS_PLATFORM not negotiated, AP-DEF-01).
///
/// Every access is range-checked without overflow; access direction is not restricted,
/// because in this mode the device may reach any address it is given.
@frozen
public struct IdentityTranslator: MemoryTranslator, @unchecked Sendable {
    @usableFromInline
    let region: HostRange
    /// The guest-physical address of the region's first byte.
    public let guestBase: UInt64

    /// A translator over `region`, which the guest sees at `guestBase`.
    @inlinable
    public init(region: HostRange, guestBase: UInt64) {
        self.region = region
        self.guestBase = guestBase
    }

    @inlinable
    public func resolve(_ address: UInt64, length: Int, access: MemoryAccess) -> TranslationResult {
        let offset = address &- guestBase
        let size = UInt64(truncatingIfNeeded: region.count)
        // One comparison covers address < guestBase (the subtraction wraps to a huge value).
        guard offset <= size, UInt64(truncatingIfNeeded: length) <= size &- offset, length >= 0 else {
            return .failure(.outOfRange)
        }
        return .success(HostRange(unsafeBase: region.base + Int(truncatingIfNeeded: offset), count: length))
    }
}
