@_exported import struct VirtioGrants.DomainID

/// The scheduler and the accountant name protection domains as the grant table does (Xen's
/// `domid_t`): the back-end is domain 0, guests are numbered from 1.
extension DomainID {
    /// The back-end process: owner of what is reserved for the device's own use.
    public static let backEnd = DomainID(0)

    /// Whether this is a guest (not the back-end).
    public var isGuest: Bool { rawValue != 0 }
}
