/// Virtio feature bits, in VIRTIO 1.x numbering (VIRTIO 1.2 §2.2 and §6).
///
/// Bits 0–23 and 50–127 belong to the device type; bits 24–40 are queue and negotiation
/// extensions; 41–49 are reserved. This type covers bits 0–63, which is what every
/// transport we speak (vhost-user's `u64` features) can carry.
@frozen
public struct VirtioFeatures: OptionSet, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt64

    @inlinable
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    /// The feature with bit number `bit` (0–63).
    @inlinable
    public init(bit: Int) {
        precondition((0..<64).contains(bit), "feature bit out of range")
        self.rawValue = 1 &<< UInt64(bit)
    }

    /// Legacy only: NOTIFY_ON_EMPTY (24). A non-transitional implementation never negotiates it.
    @inlinable public static var notifyOnEmpty: VirtioFeatures { VirtioFeatures(rawValue: 1 << 24) }
    /// Legacy only: ANY_LAYOUT (27).
    @inlinable public static var anyLayout: VirtioFeatures { VirtioFeatures(rawValue: 1 << 27) }
    /// VIRTIO_F_INDIRECT_DESC (28): descriptors may point to indirect tables (§2.7.5.3).
    @inlinable public static var indirectDescriptors: VirtioFeatures { VirtioFeatures(rawValue: 1 << 28) }
    /// VIRTIO_F_EVENT_IDX (29): `used_event` / `avail_event` suppression (§2.7.7, §2.7.10).
    @inlinable public static var eventIndex: VirtioFeatures { VirtioFeatures(rawValue: 1 << 29) }
    /// Bit 30: legacy UNUSED; must never be negotiated.
    @inlinable public static var legacyBit30: VirtioFeatures { VirtioFeatures(rawValue: 1 << 30) }
    /// VIRTIO_F_VERSION_1 (32): compliance with VIRTIO 1.x, little-endian everywhere.
    @inlinable public static var version1: VirtioFeatures { VirtioFeatures(rawValue: 1 << 32) }
    /// VIRTIO_F_ACCESS_PLATFORM (33): device accesses go through platform translation.
    /// In this transport it selects handle mode (grants or IOVAs) instead of guest-physical.
    @inlinable public static var accessPlatform: VirtioFeatures { VirtioFeatures(rawValue: 1 << 33) }
    /// VIRTIO_F_RING_PACKED (34): packed virtqueue layout (§2.8).
    @inlinable public static var ringPacked: VirtioFeatures { VirtioFeatures(rawValue: 1 << 34) }
    /// VIRTIO_F_IN_ORDER (35): buffers are used in the order they were made available.
    @inlinable public static var inOrder: VirtioFeatures { VirtioFeatures(rawValue: 1 << 35) }
    /// VIRTIO_F_ORDER_PLATFORM (36): hardware-grade memory barriers.
    @inlinable public static var orderPlatform: VirtioFeatures { VirtioFeatures(rawValue: 1 << 36) }
    /// VIRTIO_F_SR_IOV (37): PCI only; never offered by this transport (FEAT-T-01).
    @inlinable public static var srIOV: VirtioFeatures { VirtioFeatures(rawValue: 1 << 37) }
    /// VIRTIO_F_NOTIFICATION_DATA (38): kicks carry the next available position (§2.9).
    @inlinable public static var notificationData: VirtioFeatures { VirtioFeatures(rawValue: 1 << 38) }
    /// VIRTIO_F_NOTIF_CONFIG_DATA (39): PCI only; never offered by this transport (FEAT-T-01).
    @inlinable public static var notifConfigData: VirtioFeatures { VirtioFeatures(rawValue: 1 << 39) }
    /// VIRTIO_F_RING_RESET (40): individual queues can be reset (§2.6.1).
    @inlinable public static var ringReset: VirtioFeatures { VirtioFeatures(rawValue: 1 << 40) }

    /// Bits reserved for the device type (VIRTIO 1.2 §2.2: 0–23 and 50–127).
    public static let deviceTypeBits = VirtioFeatures(rawValue: 0x00FF_FFFF | (~UInt64(0) << 50))
    /// Bits reserved for queue and negotiation extensions (24–40 in VIRTIO 1.2).
    public static let transportBits = VirtioFeatures(rawValue: ((1 << 41) - 1) & ~UInt64(0x00FF_FFFF))
    /// Bits reserved for future extensions (41–49).
    public static let reservedBits = VirtioFeatures(rawValue: ((1 << 50) - 1) & ~((1 << 41) - 1))
    /// Legacy-only bits that a non-transitional implementation neither offers nor accepts
    /// (RSV-DEF-01: 24, 27, 30).
    public static let legacyOnly: VirtioFeatures = [.notifyOnEmpty, .anyLayout, .legacyBit30]
    /// Bits that are bound to a transport that is not ours (FEAT-T-01: 37, 39, 41).
    public static let foreignTransportBits: VirtioFeatures = [.srIOV, .notifConfigData, VirtioFeatures(bit: 41)]

    /// The transport-level features this library implements and may therefore offer or accept:
    /// what every back-end session offers besides its device's own bits.
    public static let implementedTransport: VirtioFeatures = [
        .indirectDescriptors, .eventIndex, .version1, .accessPlatform, .ringPacked, .inOrder,
    ]

    /// Prerequisites between feature bits: a feature in a key requires every feature in its
    /// value (FEAT-DRV-02, FEAT-DEV-01). The transport bits have none among themselves in
    /// VIRTIO 1.2; device types add theirs through ``closure(requirements:)``.
    public func missingPrerequisites(_ requirements: [(VirtioFeatures, VirtioFeatures)]) -> VirtioFeatures {
        var missing: VirtioFeatures = []
        for (feature, needs) in requirements where self.isSuperset(of: feature) {
            missing.formUnion(needs.subtracting(self))
        }
        return missing
    }

    /// The largest subset of `self` in which every feature's prerequisites are present: a
    /// feature whose prerequisite is absent is dropped, repeatedly, until nothing changes.
    public func closure(requirements: [(VirtioFeatures, VirtioFeatures)]) -> VirtioFeatures {
        var result = self
        var changed = true
        while changed {
            changed = false
            for (feature, needs) in requirements where result.isSuperset(of: feature) && !result.isSuperset(of: needs) {
                result.subtract(feature)
                changed = true
            }
        }
        return result
    }

    /// The numbers of the set bits, lowest first.
    public var bits: [Int] { (0..<64).filter { rawValue & (1 << UInt64($0)) != 0 } }

    public var description: String { "VirtioFeatures(" + bits.map(String.init).joined(separator: ",") + ")" }
}
