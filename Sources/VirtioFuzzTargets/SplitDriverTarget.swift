import VirtioCore

/// Fuzz target: the driver side of a split ring against a hostile device (``DriverModel``):
/// used elements with any id and length, the used index moved a little or anywhere.
///
/// Input: queue size (log2), features, then the operations of ``DriverModel``.
public enum SplitDriverTarget {
    public static func run(_ data: UnsafeRawBufferPointer) {
        var input = FuzzInput(data)
        let queueSize = 1 << (Int(input.byte()) % 9)
        let featureBits = input.byte()
        var features: VirtioFeatures = [.version1]
        if featureBits & 1 != 0 { features.insert(.indirectDescriptors) }
        if featureBits & 2 != 0 { features.insert(.eventIndex) }
        let region = GuestMemoryRegion(size: 64 * 1024)
        let layout = SplitRingLayout(queueSize: queueSize)!
        let ring = try! SplitRing(layout: layout, contiguous: region.range.slice(offset: 0, length: layout.contiguousOffsets.totalSize))
        let pool = IndirectTablePool(block: region.range.slice(offset: 0x8000, length: 0x2000), deviceAddress: 0x8000,
                                     tableCount: 32, entriesPerTable: 16)
        let driver = SplitDriverQueue(ring: ring, features: features, indirectTables: features.contains(.indirectDescriptors) ? pool : nil)
        var model = DriverModel(driver: driver, device: HostileSplitDevice(ring: ring), queueSize: queueSize)
        model.run(&input)
    }
}

struct HostileSplitDevice: HostileDevice {
    typealias Queue = SplitDriverQueue
    let ring: SplitRing
    /// What the device wrote last as used.idx.
    var usedIndex: UInt16 = 0

    func scribble(_ input: inout FuzzInput) {
        let slot = Int(input.integer(UInt16.self)) & (ring.layout.count - 1)
        let id = input.bool() ? UInt32(input.byte()) % UInt32(ring.layout.count + 2) : input.integer(UInt32.self)
        ring.usedRing.setElement(slot, UsedElement(id: id, length: input.bool() ? input.integer(UInt32.self) : UInt32(input.byte())))
    }

    /// A little, or anywhere.
    mutating func jump(_ input: inout FuzzInput) {
        usedIndex = input.bool() ? usedIndex &+ UInt16(input.byte() % 4) : input.integer(UInt16.self)
        ring.usedRing.storeIndex(usedIndex)
    }

    mutating func complete(id: UInt16, slots: Int, length: UInt32, wrote: Bool) {
        ring.usedRing.setElement(Int(usedIndex) & (ring.layout.count - 1), UsedElement(id: UInt32(id), length: length))
        usedIndex &+= 1
        ring.usedRing.storeIndex(usedIndex)
    }

    mutating func reset() { usedIndex = 0 }
}
