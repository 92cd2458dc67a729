import VirtioCore

/// Both sides of a queue over one guest memory region, whichever the ring format: what the
/// format-independent tests (random round trips) run on.
protocol QueuePair {
    associatedtype Driver: DriverQueue
    associatedtype Device: DeviceQueue<IdentityTranslator>
    var region: GuestMemoryRegion { get }
    var queueSize: Int { get }
    var driver: Driver { get set }
    var device: Device { get set }
}

extension RingHarness: QueuePair {
    var queueSize: Int { layout.count }
}

/// One packed ring in a guest memory region, with both sides and raw access for building
/// malformed rings by hand. Same region layout as ``RingHarness``.
struct PackedRingHarness: QueuePair {
    let region: GuestMemoryRegion
    let layout: PackedRingLayout
    let ring: PackedRing
    let addresses: PackedRingAddresses
    let status = DeviceStatusCell([.acknowledge, .driver, .featuresOK, .driverOK])
    var driver: PackedDriverQueue
    var device: PackedDeviceQueue<IdentityTranslator>

    var queueSize: Int { layout.count }

    init(queueSize: Int = 8, features: VirtioFeatures = [.version1, .ringPacked], regionSize: Int = 4 << 20,
         indirectTables: Int = 0, entriesPerTable: Int = 0, overflowBlocks: Int? = nil) {
        region = GuestMemoryRegion(size: regionSize, guestBase: 0)
        layout = PackedRingLayout(queueSize: queueSize)!
        addresses = PackedRingAddresses(contiguousAt: RingHarness.ringBase, layout: layout)
        ring = try! PackedRing(layout: layout, contiguous: region.hostRange(at: RingHarness.ringBase, count: layout.contiguousOffsets.totalSize)!)
        var pool: IndirectTablePool?
        if indirectTables > 0 {
            let bytes = IndirectTablePool.byteCount(tableCount: indirectTables, entriesPerTable: entriesPerTable)
            pool = IndirectTablePool(block: region.hostRange(at: RingHarness.indirectBase, count: bytes)!,
                                     deviceAddress: RingHarness.indirectBase, tableCount: indirectTables, entriesPerTable: entriesPerTable)
        }
        driver = PackedDriverQueue(ring: ring, features: features, indirectTables: pool)
        device = try! PackedDeviceQueue(queueSize: queueSize, addresses: addresses, memory: region.identityTranslator,
                                        features: features, statusCell: status, overflowBlocks: overflowBlocks)
    }

    // MARK: raw ring access (what a hostile or scripted peer does)

    /// Writes slot `slot` with AVAIL/USED set for the driver's lap `wrap` (unless `ownership`
    /// gives the raw bits) and `flags` (NEXT, WRITE, INDIRECT).
    func writeAvailable(_ slot: Int, address: UInt64 = RingHarness.page(0), length: UInt32 = 16, id: UInt16,
                        flags: PackedDescriptorFlags = [], wrap: Bool = true, ownership: PackedDescriptorFlags? = nil) {
        let bits = ownership ?? .available(wrapCounter: wrap)
        ring.descriptorRing.store(PackedDescriptor(address: address, length: length, id: id, flags: flags.union(bits)),
                                  at: slot, publishing: true)
    }

    /// Writes a used descriptor into slot `slot` as a (hostile) device would.
    func writeUsed(_ slot: Int, id: UInt16, length: UInt32, wrote: Bool = true, wrap: Bool = true) {
        var flags = PackedDescriptorFlags.used(wrapCounter: wrap)
        if wrote { flags.insert(.write) }
        let d = ring.descriptorRing.load(slot)
        ring.descriptorRing.store(PackedDescriptor(address: d.address, length: length, id: id, flags: flags), at: slot, publishing: true)
    }

    /// Writes `descriptors` as a packed indirect table at guest address `at`.
    func writeIndirectTable(at address: UInt64, _ descriptors: [PackedDescriptor]) {
        let table = UnsafeDescriptorTable(region.hostRange(at: address, count: descriptors.count * 16)!)
        for (i, d) in descriptors.enumerated() { table.storePacked(d, at: i) }
    }

    /// The flags of every slot, in ring order.
    var slotFlags: [UInt16] { (0..<layout.count).map { ring.descriptorRing.load($0).flags.rawValue } }
}
