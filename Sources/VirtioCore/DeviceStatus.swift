import Synchronization

/// The device status field (VIRTIO 1.2 §2.1).
///
/// The driver sets bits in the order of §3.1.1 and never clears one; writing zero resets the
/// device. The device sets ``deviceNeedsReset`` when it hits an error it cannot recover from.
@frozen
public struct DeviceStatus: OptionSet, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt8

    @inlinable
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// ACKNOWLEDGE (0x01): the guest noticed the device.
    @inlinable public static var acknowledge: DeviceStatus { DeviceStatus(rawValue: 0x01) }
    /// DRIVER (0x02): the guest knows how to drive the device.
    @inlinable public static var driver: DeviceStatus { DeviceStatus(rawValue: 0x02) }
    /// DRIVER_OK (0x04): the driver is set up and ready to drive the device.
    @inlinable public static var driverOK: DeviceStatus { DeviceStatus(rawValue: 0x04) }
    /// FEATURES_OK (0x08): feature negotiation is complete.
    @inlinable public static var featuresOK: DeviceStatus { DeviceStatus(rawValue: 0x08) }
    /// DEVICE_NEEDS_RESET (0x40): the device hit an error it cannot recover from.
    @inlinable public static var deviceNeedsReset: DeviceStatus { DeviceStatus(rawValue: 0x40) }
    /// FAILED (0x80): the guest gave up on the device.
    @inlinable public static var failed: DeviceStatus { DeviceStatus(rawValue: 0x80) }

    /// Every bit VIRTIO 1.2 defines (SUSPEND, 0x10, needs feature 43, which we do not offer).
    public static let defined: DeviceStatus = [.acknowledge, .driver, .driverOK, .featuresOK, .deviceNeedsReset, .failed]

    /// The order in which a driver sets the progress bits (§3.1.1).
    public static let initializationOrder: [DeviceStatus] = [.acknowledge, .driver, .featuresOK, .driverOK]

    /// Checks a status write by the driver against §2.1.1 and §3.1.1.
    ///
    /// Zero (reset) is always legal. Otherwise the new value must keep every bit of the old
    /// one (STAT-DRV-02), define no unknown bit, not claim the device-owned
    /// DEVICE_NEEDS_RESET bit unless it was already set, and its progress bits must form a
    /// prefix of ACKNOWLEDGE, DRIVER, FEATURES_OK, DRIVER_OK (STAT-DRV-01). FAILED may be
    /// added at any time; after FAILED only a reset is legal (STAT-DRV-03). Without
    /// `strictOrder`, the progress bits may come in any combination but DRIVER_OK without
    /// FEATURES_OK: a vhost-user front-end's summary of the driver's writes (GHT-VU-23).
    public static func validateDriverWrite(from old: DeviceStatus, to new: DeviceStatus, strictOrder: Bool = true) throws(StatusTransitionError) {
        if new.isEmpty { return }
        if !defined.isSuperset(of: new) { throw .undefinedBits(new.subtracting(defined)) }
        if old.contains(.failed) && new != old { throw .writeAfterFailed }
        if !new.isSuperset(of: old.subtracting(.deviceNeedsReset)) { throw .clearsBits(old.subtracting(new)) }
        if new.contains(.deviceNeedsReset) && !old.contains(.deviceNeedsReset) { throw .deviceOwnedBit }
        if !strictOrder {
            // GHT-VU-23: a vhost-user front-end reports what the driver has reached, not each
            // write; only DRIVER_OK before FEATURES_OK stays illegal.
            if new.contains(.driverOK) && !new.contains(.featuresOK) { throw .outOfOrder(.driverOK) }
            return
        }
        var gapSeen = false
        for bit in initializationOrder {
            if new.contains(bit) {
                if gapSeen { throw .outOfOrder(bit) }
            } else {
                gapSeen = true
            }
        }
    }

    public var description: String {
        let names: [(DeviceStatus, String)] = [
            (.acknowledge, "ACKNOWLEDGE"), (.driver, "DRIVER"), (.featuresOK, "FEATURES_OK"),
            (.driverOK, "DRIVER_OK"), (.deviceNeedsReset, "DEVICE_NEEDS_RESET"), (.failed, "FAILED"),
        ]
        let set = names.filter { contains($0.0) }.map(\.1)
        return set.isEmpty ? "0" : set.joined(separator: "|")
    }
}

/// Why a driver's status write breaks §2.1.1 / §3.1.1.
public enum StatusTransitionError: Error, Equatable, Sendable {
    /// The write clears bits that were set; only a reset (writing 0) may do that.
    case clearsBits(DeviceStatus)
    /// The write sets a progress bit before the ones that must precede it.
    case outOfOrder(DeviceStatus)
    /// The write sets bits VIRTIO 1.2 does not define.
    case undefinedBits(DeviceStatus)
    /// The driver tried to set DEVICE_NEEDS_RESET, which only the device sets.
    case deviceOwnedBit
    /// After FAILED the only legal write is a reset.
    case writeAfterFailed
}

/// A device status byte shared between the device's queues and its control plane.
///
/// Queues run on worker threads; a queue that breaks sets DEVICE_NEEDS_RESET here atomically
/// (STAT-DEV-02) and the control plane reads it when the driver asks.
public final class DeviceStatusCell: Sendable {
    private let value: Atomic<UInt8>

    public init(_ status: DeviceStatus = []) { value = Atomic(status.rawValue) }

    /// The current status.
    public var status: DeviceStatus { DeviceStatus(rawValue: value.load(ordering: .acquiring)) }

    /// Replaces the status (a driver write, after validation, or a reset).
    public func store(_ status: DeviceStatus) { value.store(status.rawValue, ordering: .releasing) }

    /// Sets DEVICE_NEEDS_RESET and reports whether it was newly set while DRIVER_OK was set,
    /// in which case the device owes the driver a configuration-change notification (STAT-DEV-03).
    @discardableResult
    public func setNeedsReset() -> Bool {
        let old = DeviceStatus(rawValue: value.bitwiseOr(DeviceStatus.deviceNeedsReset.rawValue, ordering: .acquiringAndReleasing).oldValue)
        return !old.contains(.deviceNeedsReset) && old.contains(.driverOK)
    }
}
