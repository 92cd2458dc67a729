import VirtioCore
import VirtioGrants

/// One split virtqueue whose ring areas, indirect tables and buffers are all granted memory
/// (`transport.md` §6): the grant-mode counterpart of ``SplitRingHarness``. The driver writes
/// grant handles (Linux's grant-DMA encoding, GHT-HDL-01); the device reaches memory only
/// through a ``GrantIOTLB`` over the ``GrantHarness``'s mapper, wrapped in ``accessLog``
/// (GHT-CNF-07..09).
///
/// The ring areas are pinned once when the harness is built, as a real back-end pins them when
/// a queue is enabled (GHT-MEM-04), so ``accessLog`` sees the device's buffer and indirect
/// table translations, each logged by its handle. A script can also act as a hostile granter:
/// rewrite grant entries through ``grants`` (``GrantHarness/table``) under the device's feet.
///
/// Frames of the front-end's region: ``descriptorFrame``, ``availableFrame`` and
/// ``indirectFrame`` granted read-only, ``usedFrame`` read-write, ``readableFrames`` read-only
/// and ``writableFrames`` read-write, each run under consecutive references (a buffer may cross
/// pages freely).
public struct GrantedSplitRingHarness: SplitRingScripting, ~Copyable {
    public static let descriptorFrame = 0
    public static let availableFrame = 1
    public static let usedFrame = 2
    public static let indirectFrame = 3
    public static let readableFrames = 16..<80
    public static let writableFrames = 80..<144

    public let grants: GrantHarness
    public let layout: SplitRingLayout
    /// The driver's view of the ring: its own frames.
    public let ring: SplitRing
    /// The device's view: the same areas, pinned through the mapper.
    public let granted: GrantedSplitRing
    public let iotlb: GrantIOTLB
    public let status = DeviceStatusCell([.acknowledge, .driver, .featuresOK, .driverOK])
    /// Every translation of ``device`` (by handle), and the script of what it may reach.
    public let accessLog = AccessLog()
    /// The first references of the readable and writable buffer runs, and of the indirect page.
    public let readableBase: GrantReference
    public let writableBase: GrantReference
    public let indirectBase: GrantReference
    public var driver: SplitDriverQueue
    public var device: SplitDeviceQueue<LoggingTranslator<GrantTranslator>>

    public var queueSize: Int { layout.count }

    /// A queue of `queueSize` (at most 256, so that each area fits its page), both sides
    /// negotiated with `features`; 16 indirect tables of 16 entries for the driver if it may use
    /// INDIRECT; an IOTLB of `iotlbEntries`.
    public init(queueSize: Int = 16, features: VirtioFeatures = [.version1, .indirectDescriptors, .accessPlatform],
                iotlbEntries: Int = 64) throws {
        precondition(queueSize <= 256, "each ring area is one granted page")
        let grants = GrantHarness(frameCount: 160)
        let peer = GrantHarness.backEnd
        let table = grants.table
        func grant(_ frames: Range<Int>, readOnly: Bool) throws -> GrantReference {
            try table.grant(frames: frames.map { UInt32($0) }, to: peer, readOnly: readOnly)
        }
        let descriptors = try grant(Self.descriptorFrame..<Self.descriptorFrame + 1, readOnly: true)
        let available = try grant(Self.availableFrame..<Self.availableFrame + 1, readOnly: true)
        let used = try grant(Self.usedFrame..<Self.usedFrame + 1, readOnly: false)
        let indirect = try grant(Self.indirectFrame..<Self.indirectFrame + 1, readOnly: true)
        let readable = try grant(Self.readableFrames, readOnly: true)
        let writable = try grant(Self.writableFrames, readOnly: false)
        let layout = SplitRingLayout(queueSize: queueSize)!
        let page = { (f: Int) in grants.frames.range.slice(offset: f * GrantHarness.pageSize, length: GrantHarness.pageSize) }
        let ring = try SplitRing(layout: layout, descriptorTable: page(Self.descriptorFrame), availRing: page(Self.availableFrame),
                                 usedRing: page(Self.usedFrame))
        let addresses = SplitRingAddresses(descriptorTable: GrantHandle(reference: descriptors).rawValue,
                                           availRing: GrantHandle(reference: available).rawValue,
                                           usedRing: GrantHandle(reference: used).rawValue)
        // Everything that may throw comes first: a noncopyable value is initialized all at once.
        let granted = try GrantedSplitRing(layout: layout, addresses: addresses, mapper: grants.mapper)
        indirectBase = indirect
        readableBase = readable
        writableBase = writable
        self.grants = grants
        self.layout = layout
        self.ring = ring
        let pool = IndirectTablePool(block: page(Self.indirectFrame), deviceAddress: GrantHandle(reference: indirect).rawValue,
                                     tableCount: 16, entriesPerTable: 16)
        driver = SplitDriverQueue(ring: ring, features: features, indirectTables: pool)
        self.granted = granted
        iotlb = GrantIOTLB(mapper: grants.mapper, capacity: iotlbEntries)
        device = SplitDeviceQueue(ring: granted.ring, memory: LoggingTranslator(iotlb.translator, log: accessLog),
                                  features: features, statusCell: status)
    }

    /// The translator the harness's device uses: the IOTLB, through ``accessLog``.
    public var translator: LoggingTranslator<GrantTranslator> { LoggingTranslator(iotlb.translator, log: accessLog) }

    /// The handle of byte `offset` of the readable (or writable) buffer run.
    public func handle(writable: Bool, offset: Int) -> UInt64 {
        let base = writable ? writableBase : readableBase
        return GrantHandle(reference: base.advanced(by: offset / GrantHarness.pageSize), offset: offset % GrantHarness.pageSize).rawValue
    }

    /// The handles of `count` bytes from `offset` of a buffer run: a range for ``accessLog``'s
    /// scripts (consecutive references make consecutive handles).
    public func handles(writable: Bool, offset: Int, count: Int) -> Range<UInt64> {
        handle(writable: writable, offset: offset)..<handle(writable: writable, offset: offset) + UInt64(count)
    }

    /// The front-end's (guest-physical) address of the same byte.
    public func frameAddress(writable: Bool, offset: Int) -> UInt64 {
        let first = writable ? Self.writableFrames.lowerBound : Self.readableFrames.lowerBound
        return grants.address(ofFrame: UInt32(first + offset / GrantHarness.pageSize)) + UInt64(offset % GrantHarness.pageSize)
    }

    // MARK: the scripted front-end (the rest is ``SplitRingScripting``)

    /// The handle of byte `offset` of the indirect page.
    public func indirectHandle(offset: Int) -> UInt64 { GrantHandle(reference: indirectBase, offset: offset).rawValue }

    /// Writes `descriptors` as an indirect table at byte `offset` of the indirect page (reached
    /// by the device at ``indirectHandle(offset:)``).
    public func writeIndirectTable(atOffset offset: Int, _ descriptors: [Descriptor]) {
        precondition(offset >= 0 && offset + descriptors.count * 16 <= GrantHarness.pageSize, "the table lies in the indirect page")
        let at = grants.address(ofFrame: UInt32(Self.indirectFrame)) + UInt64(offset)
        let table = UnsafeDescriptorTable(grants.frames.hostRange(at: at, count: descriptors.count * 16)!)
        for (i, d) in descriptors.enumerated() { table.store(d, at: i) }
    }
}

extension GrantedSplitRingHarness {
    /// The device side, moved out of the harness (which ends here): for a test that hands the
    /// queue to another owner. The queue is noncopyable, so nothing else can alias it.
    public consuming func takeDevice() -> SplitDeviceQueue<LoggingTranslator<GrantTranslator>> { device }
}
