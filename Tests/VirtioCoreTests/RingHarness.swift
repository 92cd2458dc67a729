import VirtioCore

/// One split ring in a guest memory region, with both sides and raw access for building
/// malformed rings by hand.
///
/// Layout of the region: the ring at 0x1000, indirect tables at 0x10000, payload buffers from
/// 0x40000 (each 4 KiB page one buffer unless a test says otherwise).
struct RingHarness {
    static let ringBase: UInt64 = 0x1000
    static let indirectBase: UInt64 = 0x10000
    static let payloadBase: UInt64 = 0x40000

    let region: GuestMemoryRegion
    let layout: SplitRingLayout
    let ring: SplitRing
    let addresses: SplitRingAddresses
    let status = DeviceStatusCell([.acknowledge, .driver, .featuresOK, .driverOK])
    var driver: SplitDriverQueue
    var device: SplitDeviceQueue<IdentityTranslator>

    init(queueSize: Int = 8, features: VirtioFeatures = [.version1], regionSize: Int = 4 << 20,
         indirectTables: Int = 0, entriesPerTable: Int = 0, overflowBlocks: Int? = nil) {
        region = GuestMemoryRegion(size: regionSize, guestBase: 0)
        layout = SplitRingLayout(queueSize: queueSize)!
        addresses = SplitRingAddresses(contiguousAt: Self.ringBase, layout: layout)
        ring = try! SplitRing(layout: layout, contiguous: region.hostRange(at: Self.ringBase, count: layout.contiguousOffsets.totalSize)!)
        var pool: IndirectTablePool?
        if indirectTables > 0 {
            let bytes = IndirectTablePool.byteCount(tableCount: indirectTables, entriesPerTable: entriesPerTable)
            pool = IndirectTablePool(block: region.hostRange(at: Self.indirectBase, count: bytes)!, deviceAddress: Self.indirectBase,
                                     tableCount: indirectTables, entriesPerTable: entriesPerTable)
        }
        driver = SplitDriverQueue(ring: ring, features: features, indirectTables: pool)
        device = try! SplitDeviceQueue(queueSize: queueSize, addresses: addresses, memory: region.identityTranslator,
                                       features: features, statusCell: status, overflowBlocks: overflowBlocks)
    }

    /// The guest address of payload page `i`.
    static func page(_ i: Int) -> UInt64 { payloadBase + UInt64(i) * 4096 }

    // MARK: raw ring access (what a hostile or scripted driver does)

    func writeDescriptor(_ index: Int, address: UInt64, length: UInt32, flags: DescriptorFlags = [], next: UInt16 = 0) {
        ring.descriptorTable.store(Descriptor(address: address, length: length, flags: flags, next: next), at: index)
    }

    /// Writes `descriptors` as an indirect table at guest address `at`.
    func writeIndirectTable(at address: UInt64, _ descriptors: [Descriptor]) {
        let table = UnsafeDescriptorTable(region.hostRange(at: address, count: descriptors.count * 16)!)
        for (i, d) in descriptors.enumerated() { table.store(d, at: i) }
    }

    /// Places `heads` in the available ring starting at position `from` and publishes `from + heads.count`.
    func makeAvailable(_ heads: [UInt16], from position: UInt16 = 0) {
        for (i, head) in heads.enumerated() {
            ring.availRing.setEntry(Int(position &+ UInt16(i)) & (layout.count - 1), head)
        }
        ring.availRing.storeIndex(position &+ UInt16(heads.count))
    }

    /// The used elements published so far (from position 0).
    var usedElements: [UsedElement] {
        let n = Int(ring.usedRing.loadIndex())
        return (0..<n).map { ring.usedRing.element($0 & (layout.count - 1)) }
    }
}

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct TestRandom: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed == 0 ? 0x9E37_79B9_7F4A_7C15 : seed }
    mutating func next() -> UInt64 {
        state ^= state >> 12
        state ^= state << 25
        state ^= state >> 27
        return state &* 2_685_821_657_736_338_717
    }
}

extension Tag {
    @Tag static var ring: Self
    @Tag static var hostile: Self
    @Tag static var wire: Self
}

import Testing
