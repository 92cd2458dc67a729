import VirtioCore

/// One area of a ring to pin: its name, grant handle, size, alignment and the device's access.
typealias RingAreaRequest = (area: RingArea, address: UInt64, size: Int, alignment: Int, access: MemoryAccess)

/// Pins each area once through `mapper` (alignment checked first, PKD-DRV-01/SPL-DRV-01).
private func pin(_ areas: [RingAreaRequest], mapper: GrantMapper) throws(RingSetupError) -> [PinnedGrantRange] {
    var pinned: [PinnedGrantRange] = []
    for a in areas {
        guard a.address & UInt64(a.alignment - 1) == 0 else { throw .misaligned(a.area, address: a.address) }
        do {
            pinned.append(try PinnedGrantRange(mapper: mapper, handle: GrantHandle(rawValue: a.address), length: a.size, access: a.access))
        } catch {
            throw .translation(a.area, error)
        }
    }
    return pinned
}

/// A split ring whose three areas are granted memory: each area is pinned once, when the
/// queue is enabled, with the access the device needs (descriptor table and available ring
/// read-only, used ring writable) and then read through plain pointers (DESIGN §5, H5: a
/// multi-page area uses consecutive references to consecutive frames).
public final class GrantedSplitRing: @unchecked Sendable {
    public let ring: SplitRing
    private let pinned: [PinnedGrantRange]

    /// Pins the areas at the device-visible `addresses` (grant handles) through `mapper`.
    public init(layout: SplitRingLayout, addresses: SplitRingAddresses, mapper: GrantMapper) throws(RingSetupError) {
        pinned = try pin([
            (.descriptorTable, addresses.descriptorTable, layout.descriptorTableSize, SplitRingLayout.descriptorTableAlignment, .read),
            (.availRing, addresses.availRing, layout.availRingSize, SplitRingLayout.availRingAlignment, .read),
            (.usedRing, addresses.usedRing, layout.usedRingSize, SplitRingLayout.usedRingAlignment, .write),
        ], mapper: mapper)
        ring = try SplitRing(layout: layout, descriptorTable: pinned[0].range, availRing: pinned[1].range, usedRing: pinned[2].range)
    }

    /// Unpins the areas (idempotent); the ring must no longer be used.
    public func release() { pinned.forEach { $0.release() } }
}

/// A packed ring whose three areas are granted memory, pinned once: the descriptor ring
/// writable (the device writes used descriptors into it), the driver's event area read-only,
/// the device's writable.
public final class GrantedPackedRing: @unchecked Sendable {
    public let ring: PackedRing
    private let pinned: [PinnedGrantRange]

    /// Pins the areas at the device-visible `addresses` (grant handles) through `mapper`.
    public init(layout: PackedRingLayout, addresses: PackedRingAddresses, mapper: GrantMapper) throws(RingSetupError) {
        pinned = try pin([
            (.descriptorRing, addresses.descriptorRing, layout.descriptorRingSize, PackedRingLayout.descriptorRingAlignment, .write),
            (.driverEventArea, addresses.driverEventArea, PackedRingLayout.eventAreaSize, PackedRingLayout.eventAreaAlignment, .read),
            (.deviceEventArea, addresses.deviceEventArea, PackedRingLayout.eventAreaSize, PackedRingLayout.eventAreaAlignment, .write),
        ], mapper: mapper)
        ring = try PackedRing(layout: layout, descriptorRing: pinned[0].range, driverEventArea: pinned[1].range,
                              deviceEventArea: pinned[2].range)
    }

    /// Unpins the areas (idempotent); the ring must no longer be used.
    public func release() { pinned.forEach { $0.release() } }
}
