import Testing
import VirtioCore
import VirtioDevices
@testable import VirtioScheduler

@Suite("Device models")
struct DeviceModelTests {
    static let window = BlockDeviceModel.Rules(sectors: 100..<200)
    static let own = EthernetAddress(0x52, 0x54, 0x00, 0x12, 0x34, 0x56)

    func block(_ rules: BlockDeviceModel.Rules = window) -> BlockDeviceModel {
        var model = BlockDeviceModel()
        model.load(rules)
        return model
    }

    func network(maxFrame: Int = 1514) -> NetworkDeviceModel {
        var model = NetworkDeviceModel()
        model.load(.init(address: Self.own, maxFrame: maxFrame))
        return model
    }

    /// The verdict of a fresh block model with `rules` on one request.
    func blk(_ readable: [UInt8], writable: Int = 0, _ rules: BlockDeviceModel.Rules = window) -> Bool {
        var model = block(rules)
        let v = verdict(&model, readable, writable: writable)
        #expect(model.inFlight == (v.isAllowed ? 1 : 0), "only an allowed request is in flight")
        return v.isAllowed
    }

    /// A read of `sectors` whole sectors at `sector` (data room plus the status byte).
    func read(_ sector: UInt64, sectors: Int = 1, _ rules: BlockDeviceModel.Rules = window) -> Bool {
        blk(blockRequest(.read, sector: sector), writable: sectors * 512 + 1, rules)
    }

    func write(_ sector: UInt64, sectors: Int = 1, _ rules: BlockDeviceModel.Rules = window) -> Bool {
        blk(blockRequest(.write, sector: sector, payload: sectors * 512), writable: 1, rules)
    }

    @Test("GHT-MDL-01: a model is reusable only with nothing in flight; reset forgets in-flight requests, rules and residue")
    func reusable() {
        var b = block()
        #expect(b.isReusable && b.residue.allSatisfy { $0 == 0 })
        #expect(verdict(&b, blockRequest(.write, sector: 0x90, payload: 512), writable: 1) == .allowed)
        #expect(verdict(&b, blockRequest(.read, sector: 0xa1), writable: 513) == .allowed)
        #expect(!b.isReusable && b.inFlight == 2)
        b.finish(queue: 0)
        #expect(!b.isReusable)
        b.finish(queue: 0)
        #expect(b.isReusable)
        #expect(!verdict(&b, blockRequest(.read, sector: 5), writable: 513).isAllowed)
        #expect(b.isReusable, "a denied request is not in flight")
        #expect(verdict(&b, blockRequest(.read, sector: 0xa1), writable: 513) == .allowed)
        #expect(b.residue.contains(0xa1))
        b.reset()
        #expect(b.isReusable && b.inFlight == 0 && b.rules == nil)
        #expect(b.residue.count >= 12 && b.residue.allSatisfy { $0 == 0 }, "residue \(b.residue)")

        var n = network()
        #expect(verdict(&n, transmitFrame(source: Self.own, payload: 50), queue: 1) == .allowed)
        #expect(!n.isReusable)
        #expect(n.residue == Self.own.array)
        n.finish(queue: 1)
        #expect(n.isReusable)
        #expect(verdict(&n, [], writable: 1526, queue: 0) == .allowed)
        #expect(!n.isReusable)
        n.reset()
        #expect(n.isReusable && n.inFlight == 0 && n.rules == nil && n.residue == [0, 0, 0, 0, 0, 0])

        var o = OpaqueDeviceModel()
        o.load(.init())
        #expect(verdict(&o, [1, 2, 3]) == .allowed)
        #expect(!o.isReusable)
        o.finish(queue: 0)
        #expect(o.isReusable)
        #expect(verdict(&o, [1]) == .allowed)
        o.reset()
        #expect(o.isReusable && o.rules == nil)
    }

    @Test("GHT-MDL-02: with no guest context loaded every model denies every request")
    func noRulesDenies() {
        var b = BlockDeviceModel()
        #expect(!verdict(&b, blockRequest(.read, sector: 0), writable: 513).isAllowed)
        #expect(!verdict(&b, blockRequest(.flush, sector: 0), writable: 1).isAllowed)
        var n = NetworkDeviceModel()
        #expect(!verdict(&n, [], writable: 1526, queue: 0).isAllowed)
        #expect(!verdict(&n, transmitFrame(source: EthernetAddress(0, 0, 0, 0, 0, 0), payload: 50), queue: 1).isAllowed)
        var o = OpaqueDeviceModel()
        #expect(!verdict(&o, [1]).isAllowed)
        #expect(b.inFlight == 0 && n.inFlight == 0 && o.inFlight == 0)
        // Unloading rules (a context switch to none) denies again.
        var loaded = block()
        loaded.load(nil)
        #expect(!verdict(&loaded, blockRequest(.read, sector: 150), writable: 513).isAllowed)
    }

    @Test("GHT-MDL-03: reads and writes inside the window pass, edges included; one sector past either end is denied")
    func blockWindow() {
        #expect(read(100) && read(199) && read(100, sectors: 100))
        #expect(write(100) && write(199) && write(100, sectors: 100))
        #expect(!read(200) && !read(199, sectors: 2) && !read(100, sectors: 101) && !read(99) && !read(99, sectors: 2))
        #expect(!write(200) && !write(199, sectors: 2) && !write(99) && !write(0))
        // A partial sector counts as a whole one.
        #expect(blk(blockRequest(.read, sector: 199), writable: 512 + 2) == false)
        #expect(blk(blockRequest(.write, sector: 199, payload: 513), writable: 1) == false)
    }

    @Test("GHT-MDL-03: sector UInt64.max with any length is denied, and huge lengths do not overflow")
    func blockOverflow() {
        let all = BlockDeviceModel.Rules(sectors: 0..<UInt64.max)
        for sectors in [0, 1, 2, 8] {
            #expect(!read(.max, sectors: sectors), "\(sectors) sectors at UInt64.max")
            #expect(!write(.max, sectors: sectors))
            #expect(!read(.max, sectors: max(sectors, 1), all))
            #expect(!write(.max, sectors: max(sectors, 1), all))
        }
        #expect(read(.max - 1, sectors: 1, all) && !read(.max - 1, sectors: 2, all))
        #expect(!write(.max - 1, sectors: 2, all))
        let wrap = [BlockRangeSegment(sector: .max - 1, sectorCount: .max)]
        #expect(!blk(rangeRequest(.writeZeroes, wrap), writable: 1, all))
        #expect(!blk(rangeRequest(.discard, [BlockRangeSegment(sector: .max, sectorCount: 1)]), writable: 1))
    }

    @Test("GHT-MDL-03: a read-only window refuses writes, discards and write-zeroes but allows reads")
    func blockReadOnly() {
        let ro = BlockDeviceModel.Rules(sectors: 100..<200, readOnly: true)
        #expect(read(150, ro))
        #expect(!write(150, ro))
        #expect(!blk(rangeRequest(.discard, [BlockRangeSegment(sector: 150, sectorCount: 1)]), writable: 1, ro))
        #expect(!blk(rangeRequest(.writeZeroes, [BlockRangeSegment(sector: 150, sectorCount: 1)]), writable: 1, ro))
    }

    @Test("GHT-MDL-03: DISCARD and WRITE_ZEROES pass only with every range inside the window and at most rangeLimit ranges")
    func blockRanges() {
        let inside = [BlockRangeSegment(sector: 100, sectorCount: 10), BlockRangeSegment(sector: 150, sectorCount: 50)]
        for type in [BlockRequestType.discard, .writeZeroes] {
            #expect(blk(rangeRequest(type, inside), writable: 1))
            #expect(!blk(rangeRequest(type, inside + [BlockRangeSegment(sector: 199, sectorCount: 2)]), writable: 1))
            #expect(!blk(rangeRequest(type, [BlockRangeSegment(sector: 90, sectorCount: 20)] + inside), writable: 1))
            #expect(!blk(rangeRequest(type, inside + [BlockRangeSegment(sector: 5000, sectorCount: 0)]), writable: 1))
            let limit = BlockDeviceModel.rangeLimit
            let many = Array(repeating: BlockRangeSegment(sector: 120, sectorCount: 1), count: limit)
            #expect(blk(rangeRequest(type, many), writable: 1))
            #expect(!blk(rangeRequest(type, many + [BlockRangeSegment(sector: 120, sectorCount: 1)]), writable: 1))
        }
    }

    @Test("GHT-MDL-03: what the device answers by itself passes: a short header, FLUSH, GET_ID, an unknown type")
    func blockDeviceAnswers() {
        #expect(blk(Array(blockRequest(.write, sector: 5000).prefix(15)), writable: 1))
        #expect(blk([], writable: 1))
        #expect(blk(blockRequest(.flush, sector: 0), writable: 1))
        #expect(blk(blockRequest(.getID, sector: 9999), writable: 21))
        #expect(blk(blockRequest(BlockRequestType(rawValue: 0x77), sector: 9999), writable: 1))
    }

    @Test("GHT-MDL-04: transmit only from the guest's own address and within maxFrame; short frames and receive buffers pass")
    func networkRules() {
        let other = EthernetAddress(0x52, 0x54, 0x00, 0x12, 0x34, 0x57)
        func tx(_ frame: [UInt8], maxFrame: Int = 1514) -> Bool {
            var model = network(maxFrame: maxFrame)
            let v = verdict(&model, frame, queue: NetworkDeviceModel.transmitQueue)
            #expect(model.inFlight == (v.isAllowed ? 1 : 0))
            return v.isAllowed
        }
        #expect(tx(transmitFrame(source: Self.own, payload: 100)))
        #expect(!tx(transmitFrame(source: other, payload: 100)))
        #expect(!tx(transmitFrame(source: .broadcast, payload: 100)))
        #expect(tx(transmitFrame(source: Self.own, payload: 1500)), "a 1514-byte frame fits")
        #expect(!tx(transmitFrame(source: Self.own, payload: 1501)), "a 1515-byte frame does not")
        #expect(!tx(transmitFrame(source: Self.own, payload: 100), maxFrame: 113))
        #expect(tx(transmitFrame(source: Self.own, payload: 100), maxFrame: 114))
        // Frames too short for an Ethernet header are the device's to drop, whatever they hold.
        #expect(tx([UInt8](repeating: 0, count: NetworkHeader.byteCount + 13)))
        #expect(tx([UInt8](repeating: 0xff, count: NetworkHeader.byteCount)))
        #expect(tx([]))
        // Receive buffers are the device's to fill.
        var model = network()
        #expect(verdict(&model, [], writable: 1526, queue: 0) == .allowed)
        #expect(model.inFlight == 1)
    }
}
