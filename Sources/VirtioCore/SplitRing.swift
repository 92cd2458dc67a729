/// One of the areas of a virtqueue: the three of a split ring, the three of a packed ring.
public enum RingArea: String, Hashable, Sendable {
    case descriptorTable, availRing, usedRing
    case descriptorRing, driverEventArea, deviceEventArea
}

extension MemoryTranslator {
    /// A ring area at device-visible `address`: its alignment checked (SPL-DRV-01, PKD-DRV-01),
    /// then translated once as one contiguous range with `access`.
    func resolve(_ area: RingArea, _ address: UInt64, _ size: Int, _ alignment: Int,
                 _ access: MemoryAccess) throws(RingSetupError) -> HostRange {
        guard address & UInt64(alignment - 1) == 0 else { throw .misaligned(area, address: address) }
        do {
            return try translateContiguous(address, length: size, access: access)
        } catch {
            throw .translation(area, error)
        }
    }
}

/// Why a ring could not be set up from the addresses the driver configured.
public enum RingSetupError: Error, Hashable, Sendable {
    /// The queue size is 0 or above 32768, or (split) not a power of 2 (SPL-DEF-01, PKD-DEF-01,
    /// TRN-M-04).
    case invalidQueueSize(Int)
    /// An area's address does not meet its alignment (SPL-DRV-01), in device or host terms.
    case misaligned(RingArea, address: UInt64)
    /// An area could not be translated as one contiguous range with the access it needs.
    case translation(RingArea, TranslationFault)
}

/// The three areas of a split virtqueue, resolved once to host memory (DESIGN §5: a ring
/// is translated once at setup and then read through plain pointers).
@frozen
public struct SplitRing: @unchecked Sendable {
    public let layout: SplitRingLayout
    @usableFromInline package let descriptorTable: UnsafeDescriptorTable
    @usableFromInline package let availRing: UnsafeAvailRing
    @usableFromInline package let usedRing: UnsafeUsedRing

    /// A ring over host memory the caller owns (the driver side).
    public init(layout: SplitRingLayout, descriptorTable: HostRange, availRing: HostRange, usedRing: HostRange) throws(RingSetupError) {
        let areas: [(RingArea, HostRange, Int, Int)] = [
            (.descriptorTable, descriptorTable, layout.descriptorTableSize, SplitRingLayout.descriptorTableAlignment),
            (.availRing, availRing, layout.availRingSize, SplitRingLayout.availRingAlignment),
            (.usedRing, usedRing, layout.usedRingSize, SplitRingLayout.usedRingAlignment),
        ]
        for (area, range, size, alignment) in areas {
            guard range.count >= size else {
                throw .translation(area, TranslationFault(.outOfRange, address: UInt64(range.startAddress), length: size, access: .read))
            }
            guard range.isAligned(to: alignment) else { throw .misaligned(area, address: UInt64(range.startAddress)) }
        }
        self.layout = layout
        self.descriptorTable = UnsafeDescriptorTable(descriptorTable.slice(offset: 0, length: layout.descriptorTableSize))
        self.availRing = UnsafeAvailRing(availRing, count: layout.count)
        self.usedRing = UnsafeUsedRing(usedRing, count: layout.count)
    }

    /// A ring over one contiguous host block laid out by ``SplitRingLayout/contiguousOffsets``.
    public init(layout: SplitRingLayout, contiguous block: HostRange) throws(RingSetupError) {
        let o = layout.contiguousOffsets
        guard block.count >= o.totalSize else {
            throw .translation(.descriptorTable, TranslationFault(.outOfRange, address: UInt64(block.startAddress), length: o.totalSize, access: .read))
        }
        try self.init(layout: layout,
                      descriptorTable: block.slice(offset: o.descriptorTable, length: layout.descriptorTableSize),
                      availRing: block.slice(offset: o.availRing, length: layout.availRingSize),
                      usedRing: block.slice(offset: o.usedRing, length: layout.usedRingSize))
    }

    /// The device's view: each area's device-visible address checked for alignment
    /// (SPL-DRV-01) and translated once with the access the device needs — the descriptor
    /// table and available ring read-only (SPL-DEV-03), the used ring writable.
    public init<Memory: MemoryTranslator>(layout: SplitRingLayout, addresses: SplitRingAddresses, memory: Memory) throws(RingSetupError) {
        let desc = try memory.resolve(.descriptorTable, addresses.descriptorTable, layout.descriptorTableSize, SplitRingLayout.descriptorTableAlignment, .read)
        let avail = try memory.resolve(.availRing, addresses.availRing, layout.availRingSize, SplitRingLayout.availRingAlignment, .read)
        let used = try memory.resolve(.usedRing, addresses.usedRing, layout.usedRingSize, SplitRingLayout.usedRingAlignment, .write)
        try self.init(layout: layout, descriptorTable: desc, availRing: avail, usedRing: used)
    }

    /// Zeroes all three areas, as a driver does before enabling a queue (ANS-DRV-01, QRST-DRV-02).
    public func zero() {
        HostRange(unsafeBase: descriptorTable.base, count: layout.descriptorTableSize).fill(with: 0)
        HostRange(unsafeBase: availRing.base, count: layout.availRingSize).fill(with: 0)
        HostRange(unsafeBase: usedRing.base, count: layout.usedRingSize).fill(with: 0)
    }
}
