import VirtioCore

/// One packed virtqueue (VIRTIO 1.2 §2.8) in a guest memory region, with both sides and raw
/// access to every slot: the packed counterpart of ``SplitRingHarness``, same region layout.
///
/// As a scripted front-end it writes available slots with any flags and wrap bits
/// (``writeAvailable(_:address:length:id:flags:wrap:ownership:)``); as a scripted back-end it
/// writes used slots (``writeUsed(_:id:length:wrote:wrap:)``). ``accessLog`` records and scripts
/// the device's translations.
public struct PackedRingHarness: ~Copyable {
    public let region: GuestMemoryRegion
    public let layout: PackedRingLayout
    public let ring: PackedRing
    public let addresses: PackedRingAddresses
    public let status = DeviceStatusCell([.acknowledge, .driver, .featuresOK, .driverOK])
    public let accessLog = AccessLog()
    public var driver: PackedDriverQueue
    public var device: PackedDeviceQueue<LoggingTranslator<IdentityTranslator>>

    public var queueSize: Int { layout.count }

    public init(queueSize: Int = 8, features: VirtioFeatures = [.version1, .ringPacked], regionSize: Int = 4 << 20,
                indirectTables: Int = 0, entriesPerTable: Int = 0, overflowBlocks: Int? = nil) {
        region = GuestMemoryRegion(size: regionSize, guestBase: 0)
        layout = PackedRingLayout(queueSize: queueSize)!
        addresses = PackedRingAddresses(contiguousAt: SplitRingHarness.ringBase, layout: layout)
        ring = try! PackedRing(layout: layout, contiguous: region.hostRange(at: SplitRingHarness.ringBase, count: layout.contiguousOffsets.totalSize)!)
        let pool = SplitRingHarness.indirectPool(region: region, tables: indirectTables, entries: entriesPerTable)
        driver = PackedDriverQueue(ring: ring, features: features, indirectTables: pool)
        device = try! PackedDeviceQueue(queueSize: queueSize, addresses: addresses,
                                        memory: LoggingTranslator(region.identityTranslator, log: accessLog),
                                        features: features, statusCell: status, overflowBlocks: overflowBlocks)
    }

    // MARK: the scripted front-end

    /// Writes slot `slot` with AVAIL/USED set for the driver's lap `wrap` (unless `ownership`
    /// gives the raw bits) and `flags` (NEXT, WRITE, INDIRECT).
    public func writeAvailable(_ slot: Int, address: UInt64 = SplitRingHarness.page(0), length: UInt32 = 16, id: UInt16,
                               flags: PackedDescriptorFlags = [], wrap: Bool = true, ownership: PackedDescriptorFlags? = nil) {
        let bits = ownership ?? .available(wrapCounter: wrap)
        ring.descriptorRing.store(PackedDescriptor(address: address, length: length, id: id, flags: flags.union(bits)),
                                  at: slot, publishing: true)
    }

    /// Writes `descriptors` as a packed indirect table at guest address `at`.
    public func writeIndirectTable(at address: UInt64, _ descriptors: [PackedDescriptor]) {
        let table = UnsafeDescriptorTable(region.hostRange(at: address, count: descriptors.count * 16)!)
        for (i, d) in descriptors.enumerated() { table.storePacked(d, at: i) }
    }

    // MARK: the scripted back-end

    /// Writes a used descriptor into slot `slot` as a (hostile) device would.
    public func writeUsed(_ slot: Int, id: UInt16, length: UInt32, wrote: Bool = true, wrap: Bool = true) {
        var flags = PackedDescriptorFlags.used(wrapCounter: wrap)
        if wrote { flags.insert(.write) }
        let d = ring.descriptorRing.load(slot)
        ring.descriptorRing.store(PackedDescriptor(address: d.address, length: length, id: id, flags: flags), at: slot, publishing: true)
    }

    /// The flags of every slot, in ring order.
    public var slotFlags: [UInt16] { (0..<layout.count).map { ring.descriptorRing.load($0).flags.rawValue } }
}

extension PackedRingHarness {
    /// The device side, moved out of the harness (which ends here): for a test that hands the
    /// queue to another owner. The queue is noncopyable, so nothing else can alias it.
    public consuming func takeDevice() -> PackedDeviceQueue<LoggingTranslator<IdentityTranslator>> { device }
}
