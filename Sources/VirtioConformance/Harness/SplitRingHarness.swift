import VirtioCore

/// One split virtqueue (VIRTIO 1.2 §2.7) in a guest memory region, with both sides and raw
/// access to every byte of the ring: the scripted front-end and back-end of the conformance
/// suite (GHT-CNF-07..09).
///
/// - As a **scripted front-end** for a device under test: write descriptors, indirect tables and
///   available entries exactly as given (``writeDescriptor(_:address:length:flags:next:)``,
///   ``makeAvailable(_:from:)``), malformed or not, then let ``device`` (or your own device
///   reading ``region`` through ``translator``) consume them; ``accessLog`` records every
///   translation it asks for, and can make ranges read-only or unreachable.
/// - As a **scripted back-end** for a driver under test: let ``driver`` expose chains, then
///   write used elements and the used index exactly as given (``writeUsed(_:id:length:)``,
///   ``publishUsed(_:)``).
///
/// Layout of the region: the ring at ``ringBase``, indirect tables at ``indirectBase``, payload
/// buffers from ``payloadBase`` (each 4 KiB page one buffer unless a test says otherwise).
public struct SplitRingHarness: SplitRingScripting, ~Copyable {
    public static let ringBase: UInt64 = 0x1000
    public static let indirectBase: UInt64 = 0x10000
    public static let payloadBase: UInt64 = 0x40000

    public let region: GuestMemoryRegion
    public let layout: SplitRingLayout
    public let ring: SplitRing
    public let addresses: SplitRingAddresses
    public let status = DeviceStatusCell([.acknowledge, .driver, .featuresOK, .driverOK])
    /// Every translation of ``device``, and the script of what it may reach.
    public let accessLog = AccessLog()
    public var driver: SplitDriverQueue
    public var device: SplitDeviceQueue<LoggingTranslator<IdentityTranslator>>

    /// A queue of `queueSize` over a fresh region, both sides negotiated with `features`;
    /// `indirectTables` tables of `entriesPerTable` for the driver if it may use INDIRECT.
    public init(queueSize: Int = 8, features: VirtioFeatures = [.version1], regionSize: Int = 4 << 20,
                indirectTables: Int = 0, entriesPerTable: Int = 0, overflowBlocks: Int? = nil) {
        region = GuestMemoryRegion(size: regionSize, guestBase: 0)
        layout = SplitRingLayout(queueSize: queueSize)!
        addresses = SplitRingAddresses(contiguousAt: Self.ringBase, layout: layout)
        ring = try! SplitRing(layout: layout, contiguous: region.hostRange(at: Self.ringBase, count: layout.contiguousOffsets.totalSize)!)
        let pool = Self.indirectPool(region: region, tables: indirectTables, entries: entriesPerTable)
        driver = SplitDriverQueue(ring: ring, features: features, indirectTables: pool)
        device = try! SplitDeviceQueue(queueSize: queueSize, addresses: addresses, memory: LoggingTranslator(region.identityTranslator, log: accessLog),
                                       features: features, statusCell: status, overflowBlocks: overflowBlocks)
    }

    public var queueSize: Int { layout.count }

    /// The translator the harness's device uses: the region, through ``accessLog``.
    public var translator: LoggingTranslator<IdentityTranslator> {
        LoggingTranslator(region.identityTranslator, log: accessLog)
    }

    static func indirectPool(region: GuestMemoryRegion, tables: Int, entries: Int) -> IndirectTablePool? {
        guard tables > 0 else { return nil }
        let bytes = IndirectTablePool.byteCount(tableCount: tables, entriesPerTable: entries)
        return IndirectTablePool(block: region.hostRange(at: indirectBase, count: bytes)!, deviceAddress: indirectBase,
                                 tableCount: tables, entriesPerTable: entries)
    }

    /// The guest address of payload page `i`.
    public static func page(_ i: Int) -> UInt64 { payloadBase + UInt64(i) * 4096 }

    // MARK: the scripted front-end (the rest is ``SplitRingScripting``)

    /// Writes `descriptors` as an indirect table at guest address `at`.
    public func writeIndirectTable(at address: UInt64, _ descriptors: [Descriptor]) {
        let table = UnsafeDescriptorTable(region.hostRange(at: address, count: descriptors.count * 16)!)
        for (i, d) in descriptors.enumerated() { table.store(d, at: i) }
    }

    /// The guest-address ranges of the descriptor table, the available ring and the used ring.
    public var ringAreas: (descriptors: Range<UInt64>, available: Range<UInt64>, used: Range<UInt64>) {
        (addresses.descriptorTable..<addresses.descriptorTable + UInt64(layout.descriptorTableSize),
         addresses.availRing..<addresses.availRing + UInt64(layout.availRingSize),
         addresses.usedRing..<addresses.usedRing + UInt64(layout.usedRingSize))
    }
}

extension SplitRingHarness {
    /// The device side, moved out of the harness (which ends here): for a test that hands the
    /// queue to another owner. The queue is noncopyable, so nothing else can alias it.
    public consuming func takeDevice() -> SplitDeviceQueue<LoggingTranslator<IdentityTranslator>> { device }
}
