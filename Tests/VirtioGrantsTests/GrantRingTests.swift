import Testing
import VirtioCore
import VirtioGrants
import VirtioConformance

/// The public grant-mode split ring harness: areas, indirect tables and buffers all granted,
/// the device reaching them through a per-queue IOTLB.
typealias GrantedRingHarness = GrantedSplitRingHarness

@Suite("Rings over grant handles", .tags(.grants))
struct GrantRingTests {
    @Test("GHT-HDL-02, GHT-CHN-02, GHT-CHN-03: random chains over grant handles, page-crossing buffers, byte for byte")
    func randomRoundTrips() throws {
        var h = try GrantedRingHarness()
        var random = SystemRandomNumberGenerator()
        var posted: [UInt64: (request: [UInt8], reply: [(Int, Int)])] = [:]
        for token in 0..<400 {
            // A request of 1-3 readable buffers and 1-2 writable ones, anywhere in the areas
            // (crossing pages freely: consecutive references to consecutive frames).
            var readable: [BufferSegment] = []
            var request: [UInt8] = []
            var offset = Int.random(in: 0..<(40 * 4096), using: &random)
            for _ in 0..<Int.random(in: 1...3, using: &random) {
                let length = Int.random(in: 0...6000, using: &random)
                defer { offset += length + Int.random(in: 0...100, using: &random) }
                let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &random) }
                h.grants.frames.write(bytes, at: h.frameAddress(writable: false, offset: offset))
                readable.append(BufferSegment(address: h.handle(writable: false, offset: offset), length: UInt32(length)))
                request += bytes
            }
            var writable: [BufferSegment] = []
            var reply: [(Int, Int)] = []
            var wOffset = Int.random(in: 0..<(30 * 4096), using: &random)
            for _ in 0..<Int.random(in: 1...2, using: &random) {
                let length = Int.random(in: 1...8000, using: &random)
                writable.append(BufferSegment(address: h.handle(writable: true, offset: wOffset), length: UInt32(length)))
                reply.append((wOffset, length))
                wOffset += length
            }
            try h.driver.add(readable: readable, writable: writable, token: UInt64(token))
            posted[UInt64(token)] = (request, reply)
            h.driver.publish()
            while let chain = try h.device.popAvailable() {
                var reader = h.device.reader(for: chain)
                let bytes = try reader.readBytes(reader.remaining)
                var writer = h.device.writer(for: chain)
                try writer.write(contentsOf: Array(bytes.reversed().prefix(writer.capacity)))
                h.device.addUsed(chain, length: writer.usedLength)
            }
            h.device.publishUsed()
            h.iotlb.quiesce()   // the queue's quiescent point: nothing in flight (GHT-DMA-01)
            while let used = try h.driver.reapUsed() {
                let removed = posted.removeValue(forKey: used.token)
                let p = try #require(removed)
                var got: [UInt8] = []
                for (offset, length) in p.reply { got += h.grants.frames.read(at: h.frameAddress(writable: true, offset: offset), count: length) }
                let expected = Array(p.request.reversed().prefix(got.count))
                #expect(Int(used.writtenLength) == expected.count)
                let same = got.prefix(expected.count).elementsEqual(expected)
                #expect(same, "reply of request \(used.token)")
            }
        }
        let stats = h.iotlb.statistics
        #expect(stats.faultCount == 0)
        #expect(stats.hits > stats.misses, "the IOTLB serves most translations")
    }

    @Test("SPL-DEV-01, GHT-GNT-06, IOM-DEV-01: a read-only grant behind a device-writable descriptor faults; the buffer is unchanged")
    func readOnlyGrantWritten() throws {
        var h = try GrantedRingHarness()
        h.grants.frames.write([1, 2, 3, 4], at: h.frameAddress(writable: false, offset: 0))
        // A hostile driver marks a read-only page device-writable.
        try h.driver.add(readable: [], writable: [BufferSegment(address: h.handle(writable: false, offset: 0), length: 4)], token: 1)
        h.driver.publish()
        let chain = try #require(try h.device.popAvailable())
        var writer = h.device.writer(for: chain)
        let address = h.handle(writable: false, offset: 0)
        let fault = TranslationFault(.readOnly, address: address, length: 4, access: .write)
        #expect(throws: ChainAccessError.fault(fault)) { try writer.write(contentsOf: [9, 9, 9, 9]) }
        h.device.fail(.memoryFault(fault))
        #expect(h.status.status.contains(.deviceNeedsReset))
        #expect(h.grants.frames.read(at: h.frameAddress(writable: false, offset: 0), count: 4) == [1, 2, 3, 4])
        #expect(h.iotlb.statistics.faults[.readOnly] == 1)
        #expect(h.grants.table.entry(h.readableBase).flags.isDisjoint(with: .writing))
    }

    @Test("GHT-HDL-03: a buffer whose page-crossing continuation is not granted faults at the continuation")
    func continuationNotGranted() throws {
        let h = try GrantedRingHarness()
        let translator = h.iotlb.translator
        // The last writable page: its continuation (reference writableBase + 64) is not granted.
        let last = GrantHandle(reference: h.writableBase.advanced(by: 63), offset: 4000)
        let first = try translator.translate(last.rawValue, length: 200, access: .read)
        #expect(first.count == 96, "the granted part")
        #expect(throws: TranslationFault(.notGranted, address: last.rawValue + 96, length: 104, access: .read)) {
            _ = try translator.translate(last.rawValue + 96, length: 104, access: .read)
        }
        // Consecutive references to consecutive frames read as one contiguous range.
        let span = try translator.translate(GrantHandle(reference: h.writableBase, offset: 100).rawValue, length: 3 * 4096, access: .read)
        #expect(span.count == 3 * 4096)
        #expect(span.startAddress == h.grants.frames.range.startAddress + 80 * 4096 + 100)
    }

    @Test("GHT-HDL-04: a non-grant address is a malformed handle; faults are counted per queue")
    func malformedHandle() throws {
        let h = try GrantedRingHarness()
        let t = h.iotlb.translator
        #expect(throws: TranslationFault(.malformedHandle, address: 0x1000, length: 8, access: .read)) {
            _ = try t.translate(0x1000, length: 8, access: .read)
        }
        #expect(throws: TranslationFault(.notGranted, address: GrantHandle(reference: GrantReference(500)).rawValue, length: 8, access: .read)) {
            _ = try t.translate(GrantHandle(reference: GrantReference(500)).rawValue, length: 8, access: .read)
        }
        #expect(h.iotlb.statistics.faults == [.malformedHandle: 1, .notGranted: 1])
    }

    @Test("GHT-TLB-01, IOM-DEV-04: a revoke request drops cached mappings at the next quiescent point, then end of access succeeds")
    func revokeDropsIOTLB() throws {
        let h = try GrantedRingHarness()
        let t = h.iotlb.translator
        let ref = h.writableBase
        _ = try t.translate(GrantHandle(reference: ref).rawValue, length: 8, access: .write)
        #expect(h.iotlb.contains(ref))
        #expect(try h.grants.table.endAccess(ref) == .busy, "the IOTLB holds a real mapping")
        h.grants.mapper.requestRevoke(ref)
        #expect(throws: GrantFault.revoked(ref)) { _ = try h.grants.mapper.map(ref, access: .read) }
        // A hit before the quiescent point is still served (a chain may be using the page) ...
        _ = try t.translate(GrantHandle(reference: ref).rawValue, length: 8, access: .write)
        h.iotlb.quiesce()
        #expect(!h.iotlb.contains(ref))
        #expect(h.grants.mapper.takeCompletedRevocations() == [ref])
        #expect(try h.grants.table.endAccess(ref) == .ended)
        // ... and no stale translation survives afterwards.
        #expect(throws: TranslationFault(.notGranted, address: GrantHandle(reference: ref).rawValue, length: 8, access: .write)) {
            _ = try t.translate(GrantHandle(reference: ref).rawValue, length: 8, access: .write)
        }
    }

    @Test("GHT-TLB-02, QRST-DEV-02: a queue reset invalidates the IOTLB; nothing stale is translated")
    func resetInvalidates() throws {
        var h = try GrantedRingHarness()
        let t = h.iotlb.translator
        for k in 0..<8 { _ = try t.translate(GrantHandle(reference: h.readableBase.advanced(by: k)).rawValue, length: 1, access: .read) }
        #expect(h.grants.mapper.mappingCount(h.readableBase).readers == 1)
        h.device.reset()
        h.iotlb.invalidateAll()
        for k in 0..<8 { #expect(!h.iotlb.contains(h.readableBase.advanced(by: k))) }
        #expect(h.grants.mapper.mappingCount(h.readableBase).readers == 0)
        #expect(try h.grants.table.endAccess(h.readableBase) == .ended)
        #expect(throws: TranslationFault(.notGranted, address: GrantHandle(reference: h.readableBase).rawValue, length: 1, access: .read)) {
            _ = try t.translate(GrantHandle(reference: h.readableBase).rawValue, length: 1, access: .read)
        }
    }

    @Test("GHT-TLB-03, GHT-DMA-01: a collision evicts the old entry; its mapping is released at the next quiescent point")
    func eviction() throws {
        let h = try GrantedRingHarness(iotlbEntries: 4)
        let t = h.iotlb.translator
        let a = h.readableBase
        let b = try #require((1..<64).lazy.map { a.advanced(by: $0) }.first { h.iotlb.slot(of: $0) == h.iotlb.slot(of: a) })
        _ = try t.translate(GrantHandle(reference: a).rawValue, length: 1, access: .read)
        _ = try t.translate(GrantHandle(reference: b).rawValue, length: 1, access: .read)
        #expect(!h.iotlb.contains(a) && h.iotlb.contains(b))
        #expect(h.grants.mapper.mappingCount(a).readers == 1, "a chain in flight may still read a")
        #expect(h.iotlb.statistics.evictions == 1)
        h.iotlb.quiesce()
        #expect(h.grants.mapper.mappingCount(a).readers == 0)
    }

    @Test("GHT-MEM-04, H5: ring areas must be granted pages that follow each other in host memory")
    func ringAreasContiguous() throws {
        let g = GrantHarness(frameCount: 64)
        let layout = SplitRingLayout(queueSize: 512)!   // an 8 KiB descriptor table: two pages
        let desc = try g.table.grant(frames: [10, 12], to: GrantHarness.backEnd, readOnly: true)
        let rest = try g.table.grant(frames: [20, 21], to: GrantHarness.backEnd, readOnly: false)
        let addresses = SplitRingAddresses(descriptorTable: GrantHandle(reference: desc).rawValue,
                                           availRing: GrantHandle(reference: rest).rawValue,
                                           usedRing: GrantHandle(reference: rest.advanced(by: 1)).rawValue)
        #expect(throws: RingSetupError.translation(.descriptorTable, TranslationFault(.notContiguous, address: addresses.descriptorTable,
                                                                                       length: 8192, access: .read))) {
            _ = try GrantedSplitRing(layout: layout, addresses: addresses, mapper: g.mapper)
        }
        #expect(g.mapper.mappingCount(desc) == (0, 0), "nothing stays pinned after a failed setup")
        let rw = try g.table.grant(frames: [30, 31], to: GrantHarness.backEnd, readOnly: true)
        let bad = SplitRingAddresses(descriptorTable: GrantHandle(reference: rw).rawValue, availRing: GrantHandle(reference: rest).rawValue,
                                     usedRing: GrantHandle(reference: rw).rawValue)
        #expect(throws: RingSetupError.translation(.usedRing, TranslationFault(.readOnly, address: bad.usedRing, length: layout.usedRingSize, access: .write))) {
            _ = try GrantedSplitRing(layout: layout, addresses: bad, mapper: g.mapper)
        }
    }
}
