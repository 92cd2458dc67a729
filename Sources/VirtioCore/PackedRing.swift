/// The three areas of a packed virtqueue, resolved once to host memory (DESIGN §5).
@frozen
public struct PackedRing: @unchecked Sendable {
    public let layout: PackedRingLayout
    @usableFromInline package let descriptorRing: UnsafePackedDescriptorRing
    /// Written by the driver, read by the device: controls used-buffer notifications.
    @usableFromInline package let driverEventArea: UnsafePackedEventArea
    /// Written by the device, read by the driver: controls available-buffer notifications.
    @usableFromInline package let deviceEventArea: UnsafePackedEventArea

    /// A ring over host memory the caller owns (the driver side).
    public init(layout: PackedRingLayout, descriptorRing: HostRange, driverEventArea: HostRange,
                deviceEventArea: HostRange) throws(RingSetupError) {
        let areas: [(RingArea, HostRange, Int, Int)] = [
            (.descriptorRing, descriptorRing, layout.descriptorRingSize, PackedRingLayout.descriptorRingAlignment),
            (.driverEventArea, driverEventArea, PackedRingLayout.eventAreaSize, PackedRingLayout.eventAreaAlignment),
            (.deviceEventArea, deviceEventArea, PackedRingLayout.eventAreaSize, PackedRingLayout.eventAreaAlignment),
        ]
        for (area, range, size, alignment) in areas {
            guard range.count >= size else {
                throw .translation(area, TranslationFault(.outOfRange, address: UInt64(range.startAddress), length: size, access: .read))
            }
            guard range.isAligned(to: alignment) else { throw .misaligned(area, address: UInt64(range.startAddress)) }
        }
        self.layout = layout
        self.descriptorRing = UnsafePackedDescriptorRing(descriptorRing, count: layout.count)
        self.driverEventArea = UnsafePackedEventArea(driverEventArea)
        self.deviceEventArea = UnsafePackedEventArea(deviceEventArea)
    }

    /// A ring over one contiguous host block laid out by ``PackedRingLayout/contiguousOffsets``.
    public init(layout: PackedRingLayout, contiguous block: HostRange) throws(RingSetupError) {
        let o = layout.contiguousOffsets
        guard block.count >= o.totalSize else {
            throw .translation(.descriptorRing, TranslationFault(.outOfRange, address: UInt64(block.startAddress), length: o.totalSize, access: .read))
        }
        try self.init(layout: layout, descriptorRing: block.slice(offset: o.descriptorRing, length: layout.descriptorRingSize),
                      driverEventArea: block.slice(offset: o.driverEventArea, length: PackedRingLayout.eventAreaSize),
                      deviceEventArea: block.slice(offset: o.deviceEventArea, length: PackedRingLayout.eventAreaSize))
    }

    /// The device's view: each area's address checked for alignment (PKD-DRV-01) and
    /// translated once with the access the device needs — the descriptor ring writable (the
    /// device writes used descriptors into it), the driver's event area read-only, the device's
    /// writable.
    public init<Memory: MemoryTranslator>(layout: PackedRingLayout, addresses: PackedRingAddresses, memory: Memory) throws(RingSetupError) {
        let ring = try memory.resolve(.descriptorRing, addresses.descriptorRing, layout.descriptorRingSize,
                               PackedRingLayout.descriptorRingAlignment, .write)
        let driver = try memory.resolve(.driverEventArea, addresses.driverEventArea, PackedRingLayout.eventAreaSize,
                                 PackedRingLayout.eventAreaAlignment, .read)
        let device = try memory.resolve(.deviceEventArea, addresses.deviceEventArea, PackedRingLayout.eventAreaSize,
                                 PackedRingLayout.eventAreaAlignment, .write)
        try self.init(layout: layout, descriptorRing: ring, driverEventArea: driver, deviceEventArea: device)
    }

    /// Zeroes all three areas, as a driver does before enabling a queue (PKD-DEF-03: the ring
    /// starts out zero-filled; QRST-DRV-02).
    public func zero() {
        HostRange(unsafeBase: descriptorRing.base, count: layout.descriptorRingSize).fill(with: 0)
        HostRange(unsafeBase: driverEventArea.base, count: PackedRingLayout.eventAreaSize).fill(with: 0)
        HostRange(unsafeBase: deviceEventArea.base, count: PackedRingLayout.eventAreaSize).fill(with: 0)
    }
}
