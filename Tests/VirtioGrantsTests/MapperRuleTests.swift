import Testing
import VirtioCore
import VirtioConformance
import VirtioGrants

/// The IOMMU device rules (VIRTIO 1.2 §5.13) as the grant mapper reads them: a domain is the
/// back-end, a mapping a grant, the IOVA a handle.
@Suite("The mapper as an IOMMU, and device reads at publication", .tags(.grants))
struct MapperRuleTests {
    @Test("IOM-DEF-01: a grant maps one 4 KiB page: byte o of reference r translates to its frame's page plus o, and the next page is the next reference's")
    func mappingFormula() throws {
        let g = GrantHarness(frameCount: 32)
        let iotlb = GrantIOTLB(mapper: g.mapper, capacity: 16)
        let t = iotlb.translator
        // Consecutive references to frames that are not consecutive.
        let ref = try g.table.grant(frames: [5, 9], to: GrantHarness.backEnd, readOnly: false)
        let base = g.frames.range.startAddress
        for offset in [0, 1, 100, 2048, 4095] {
            let r = try t.translate(GrantHandle(reference: ref, offset: offset).rawValue, length: 1, access: .read)
            #expect(r.startAddress == base + 5 * 4096 + UInt(offset) && r.count == 1)
            let next = try t.translate(GrantHandle(reference: ref.advanced(by: 1), offset: offset).rawValue, length: 1, access: .write)
            #expect(next.startAddress == base + 9 * 4096 + UInt(offset))
        }
        // The granularity is the page: a span stops at the page's end, and the rest of it
        // continues at the following reference (frame 9, not frame 6).
        let head = try t.translate(GrantHandle(reference: ref, offset: 4000).rawValue, length: 200, access: .read)
        #expect(head.count == 96)
        let tail = try t.translate(GrantHandle(reference: ref, offset: 4000).rawValue + 96, length: 104, access: .read)
        #expect(tail.startAddress == base + 9 * 4096 && tail.count == 104)
        // What the table does not map translates to nothing.
        #expect(throws: TranslationFault(.notGranted, address: GrantHandle(reference: ref.advanced(by: 2)).rawValue, length: 1, access: .read)) {
            _ = try t.translate(GrantHandle(reference: ref.advanced(by: 2)).rawValue, length: 1, access: .read)
        }
    }

    @Test("IOM-DEV-06: a fault is a record of reason, address, length and direction, for reads and writes, counted by the queue that met it")
    func faultRecords() throws {
        let g = GrantHarness(frameCount: 32)
        let queueA = GrantIOTLB(mapper: g.mapper, capacity: 16), queueB = GrantIOTLB(mapper: g.mapper, capacity: 16)
        let ro = try g.table.grant(frame: 3, to: GrantHarness.backEnd, readOnly: true)
        let other = try g.table.grant(frame: 4, to: DomainID(7), readOnly: false)
        let missing = GrantHandle(reference: GrantReference(300), offset: 12).rawValue
        let cases: [(UInt64, Int, MemoryAccess, TranslationFault.Kind)] = [
            (missing, 8, .read, .notGranted),                                          // no mapping
            (missing, 16, .write, .notGranted),
            (GrantHandle(reference: ro, offset: 40).rawValue, 4, .write, .readOnly),     // mapping without WRITE
            (GrantHandle(reference: other).rawValue, 2, .read, .wrongDomain),            // another domain's mapping
            (0x2000, 8, .write, .malformedHandle),                                       // not an address in this space
        ]
        for (address, length, access, kind) in cases {
            #expect(throws: TranslationFault(kind, address: address, length: length, access: access)) {
                _ = try queueA.translator.translate(address, length: length, access: access)
            }
        }
        #expect(queueA.statistics.faults == [.notGranted: 2, .readOnly: 1, .wrongDomain: 1, .malformedHandle: 1])
        #expect(queueB.statistics.faults.isEmpty, "faults are the queue's own")
        _ = try queueB.translator.translate(GrantHandle(reference: ro, offset: 40).rawValue, length: 4, access: .read)
        #expect(queueB.statistics.faultCount == 0, "the read-only page reads")
    }

    @Test("SUP-DEV-01: the device reads a split chain as soon as the available index moves, and every handle in it resolves")
    func splitReadAtPublication() throws {
        var h = try GrantedRingHarness()
        for token in 0..<40 {
            let readable = [BufferSegment(address: h.handle(writable: false, offset: token * 300), length: 300),
                            BufferSegment(address: h.handle(writable: false, offset: 20 * 4096 + token * 500), length: 500)]
            let writable = [BufferSegment(address: h.handle(writable: true, offset: token * 1000), length: 1000)]
            try h.driver.add(readable: readable, writable: writable, token: UInt64(token))
            #expect(try h.device.popAvailable() == nil, "nothing before the index moves")
            h.driver.publish()   // no notification: the device reads on its own
            let chain = try #require(try h.device.popAvailable())
            let segments = chain.segments.array
            #expect(segments.map(\.address) == (readable + writable).map(\.address))
            for s in segments {
                var done = 0
                while done < Int(s.length) {
                    done += try h.iotlb.translator.translate(s.address + UInt64(done), length: Int(s.length) - done, access: s.access).count
                }
            }
            h.device.addUsed(chain, length: 0)
            h.device.publishUsed()
            #expect(try h.driver.reapUsed()?.token == UInt64(token))
        }
        #expect(h.iotlb.statistics.faultCount == 0)
    }

    @Test("PKD-SUP-02: the device reads a packed list as soon as its first descriptor's flags are published, the descriptors after it and the buffers included")
    func packedReadAtPublication() throws {
        let g = GrantHarness(frameCount: 64)
        let peer = GrantHarness.backEnd
        let layout = PackedRingLayout(queueSize: 16)!
        let ringRef = try g.table.grant(frame: 0, to: peer, readOnly: false)
        let readable = try g.table.grant(frames: (8..<24).map { UInt32($0) }, to: peer, readOnly: true)
        let writable = try g.table.grant(frames: (24..<40).map { UInt32($0) }, to: peer, readOnly: false)
        let features: VirtioFeatures = [.version1, .ringPacked, .accessPlatform]
        var driver = PackedDriverQueue(ring: try PackedRing(layout: layout, contiguous: g.frames.range.slice(offset: 0, length: 4096)), features: features)
        let granted = try GrantedPackedRing(layout: layout, addresses: PackedRingAddresses(contiguousAt: GrantHandle(reference: ringRef).rawValue, layout: layout),
                                            mapper: g.mapper)
        let iotlb = GrantIOTLB(mapper: g.mapper, capacity: 64)
        var device = PackedDeviceQueue(ring: granted.ring, memory: iotlb.translator, features: features)
        let handle = { (ref: GrantReference, offset: Int) in GrantHandle(reference: ref.advanced(by: offset / 4096), offset: offset % 4096).rawValue }
        for token in 0..<40 {
            // Three descriptors: the driver writes the later ones first and the head's flags last.
            let segments = [BufferSegment(address: handle(readable, token * 700), length: 700),
                            BufferSegment(address: handle(readable, 30_000 + token * 100), length: 100)]
            let reply = [BufferSegment(address: handle(writable, token * 1200), length: 1200)]
            try driver.add(readable: segments, writable: reply, token: UInt64(token))
            let list = try #require(try device.popAvailable(), "no notification needed")
            #expect(list.segments.array.map(\.address) == (segments + reply).map(\.address))
            for s in list.segments {
                var done = 0
                while done < Int(s.length) {
                    done += try iotlb.translator.translate(s.address + UInt64(done), length: Int(s.length) - done, access: s.access).count
                }
            }
            device.addUsed(list, length: 0)
            device.publishUsed()
            #expect(try driver.reapUsed()?.token == UInt64(token))
            #expect(try device.popAvailable() == nil)
        }
        #expect(iotlb.statistics.faultCount == 0)
    }
}
