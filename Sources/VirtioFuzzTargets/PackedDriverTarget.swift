import VirtioCore

/// Fuzz target: the driver side of a packed ring against a hostile device (``DriverModel``):
/// used descriptors with any id, length and flags (AVAIL/USED for either lap, WRITE or not) in
/// any slot, and honest completions written in completion order at the device's position.
///
/// Input: queue size (1 to 300), features (INDIRECT_DESC, EVENT_IDX, IN_ORDER), then the
/// operations of ``DriverModel``.
public enum PackedDriverTarget {
    public static func run(_ data: UnsafeRawBufferPointer) {
        var input = FuzzInput(data)
        let queueSize = 1 + Int(input.integer(UInt16.self)) % 300
        let featureBits = input.byte()
        var features: VirtioFeatures = [.version1, .ringPacked]
        if featureBits & 1 != 0 { features.insert(.indirectDescriptors) }
        if featureBits & 2 != 0 { features.insert(.eventIndex) }
        if featureBits & 4 != 0 { features.insert(.inOrder) }
        let region = GuestMemoryRegion(size: 64 * 1024)
        let layout = PackedRingLayout(queueSize: queueSize)!
        let ring = try! PackedRing(layout: layout, contiguous: region.range.slice(offset: 0, length: layout.contiguousOffsets.totalSize))
        let pool = IndirectTablePool(block: region.range.slice(offset: 0x8000, length: 0x2000), deviceAddress: 0x8000,
                                     tableCount: 32, entriesPerTable: 16)
        let driver = PackedDriverQueue(ring: ring, features: features, indirectTables: features.contains(.indirectDescriptors) ? pool : nil)
        var model = DriverModel(driver: driver, device: HostilePackedDevice(ring: ring), queueSize: queueSize)
        model.run(&input)
    }
}

struct HostilePackedDevice: HostileDevice {
    typealias Queue = PackedDriverQueue
    let ring: PackedRing
    /// Where the device writes its next used descriptor.
    var position = PackedRingPosition.start

    func scribble(_ input: inout FuzzInput) {
        let slot = input.index(below: ring.layout.count)
        let id = input.bool() ? UInt16(input.byte()) % UInt16(clamping: ring.layout.count + 2) : input.integer(UInt16.self)
        let length = input.bool() ? input.integer(UInt32.self) : UInt32(input.byte())
        ring.descriptorRing.store(PackedDescriptor(address: 0, length: length, id: id, flags: PackedDescriptorFlags(rawValue: input.integer(UInt16.self))),
                                  at: slot, publishing: true)
    }

    /// The device's position moved anywhere (its next honest completion lands there).
    mutating func jump(_ input: inout FuzzInput) {
        position = PackedRingPosition(slot: input.index(below: ring.layout.count), wrapCounter: input.bool())
    }

    mutating func complete(id: UInt16, slots: Int, length: UInt32, wrote: Bool) {
        var flags = PackedDescriptorFlags.used(wrapCounter: position.wrapCounter)
        if wrote { flags.insert(.write) }
        ring.descriptorRing.store(PackedDescriptor(address: 0, length: length, id: id, flags: flags), at: position.slot, publishing: true)
        position = position.advanced(by: slots, count: ring.layout.count)
    }

    mutating func reset() { position = .start }
}
