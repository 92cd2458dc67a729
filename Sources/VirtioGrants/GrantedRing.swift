import VirtioCore

/// A split ring whose three areas are granted memory: each area is pinned once, when the
/// queue is enabled, with the access the device needs (descriptor table and available ring
/// read-only, used ring writable) and then read through plain pointers (DESIGN §5, H5: a
/// multi-page area uses consecutive references to consecutive frames).
public final class GrantedSplitRing: @unchecked Sendable {
    public let ring: SplitRing
    private let pinned: [PinnedGrantRange]

    /// Pins the areas at the device-visible `addresses` (grant handles) through `mapper`.
    public init(layout: SplitRingLayout, addresses: SplitRingAddresses, mapper: GrantMapper) throws(RingSetupError) {
        let areas: [(SplitRingArea, UInt64, Int, Int, MemoryAccess)] = [
            (.descriptorTable, addresses.descriptorTable, layout.descriptorTableSize, SplitRingLayout.descriptorTableAlignment, .read),
            (.availRing, addresses.availRing, layout.availRingSize, SplitRingLayout.availRingAlignment, .read),
            (.usedRing, addresses.usedRing, layout.usedRingSize, SplitRingLayout.usedRingAlignment, .write),
        ]
        var pinned: [PinnedGrantRange] = []
        for (area, address, size, alignment, access) in areas {
            guard address & UInt64(alignment - 1) == 0 else { throw .misaligned(area, address: address) }
            do {
                pinned.append(try PinnedGrantRange(mapper: mapper, handle: GrantHandle(rawValue: address), length: size, access: access))
            } catch {
                throw .translation(area, error)
            }
        }
        self.pinned = pinned
        ring = try SplitRing(layout: layout, descriptorTable: pinned[0].range, availRing: pinned[1].range, usedRing: pinned[2].range)
    }

    /// Unpins the areas (idempotent); the ring must no longer be used.
    public func release() { pinned.forEach { $0.release() } }
}
