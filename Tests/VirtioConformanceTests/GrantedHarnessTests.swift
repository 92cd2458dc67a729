import Testing
import VirtioConformance
import VirtioCore
import VirtioGrants

/// The grant-mode split harness: the same scripting as the guest-physical one, over handles,
/// with a real grant table and mapper underneath.
@Suite("The scripted front-end and back-end over grant handles")
struct GrantedHarnessTests {
    /// A chain of one 16-byte readable buffer and one 64-byte writable one crossing a page.
    func exposeOne(_ h: inout GrantedSplitRingHarness) throws {
        h.grants.frames.write(Array(1...16), at: h.frameAddress(writable: false, offset: 100))
        try h.driver.add(readable: [BufferSegment(address: h.handle(writable: false, offset: 100), length: 16)],
                         writable: [BufferSegment(address: h.handle(writable: true, offset: 4096 - 32), length: 64)], token: 7)
        h.driver.publish()
    }

    @Test("GHT-CNF-07, GHT-HDL-02: the access log records the device's translations by handle, in order; the bytes go through the grant mapper")
    func logsHandles() throws {
        var h = try GrantedSplitRingHarness()
        try exposeOne(&h)
        let chain = try #require(try h.device.popAvailable())
        var reader = h.device.reader(for: chain)
        #expect(try reader.readBytes(16) == Array(1...16))
        var writer = h.device.writer(for: chain)
        try writer.write(contentsOf: [UInt8](repeating: 0xAB, count: 64))
        h.device.addUsed(chain, length: writer.usedLength)
        h.device.publishUsed()
        // The driver put the two buffers in an indirect table (INDIRECT is negotiated): the
        // device reads it first, then the buffers, the writable one in one run across its two
        // pages (consecutive references to consecutive frames).
        let records = h.accessLog.records
        #expect(records.map(\.access) == [.read, .read, .write])
        let indirectPage = h.indirectHandle(offset: 0)..<h.indirectHandle(offset: 0) + UInt64(GrantHarness.pageSize)
        #expect(indirectPage.contains(records[0].address))
        #expect(records.dropFirst().map(\.address) == [h.handle(writable: false, offset: 100), h.handle(writable: true, offset: 4096 - 32)])
        #expect(records.dropFirst().map(\.length) == [16, 64])
        #expect(records.allSatisfy { $0.fault == nil })
        #expect(h.grants.frames.read(at: h.frameAddress(writable: true, offset: 4096 - 32), count: 64) == [UInt8](repeating: 0xAB, count: 64))
        #expect(try h.driver.reapUsed() == UsedBuffer(token: 7, writtenLength: 64))
        #expect(h.iotlb.statistics.faultCount == 0)
    }

    @Test("GHT-CNF-07: a scripted read-only range over a writable grant faults the device's write with readOnly before the mapper is asked")
    func scriptedReadOnly() throws {
        var h = try GrantedSplitRingHarness()
        try exposeOne(&h)
        h.accessLog.makeReadOnly(h.handles(writable: true, offset: 4096 - 32, count: 64))
        let chain = try #require(try h.device.popAvailable())
        var writer = h.device.writer(for: chain)
        #expect(throws: ChainAccessError.self) { try writer.write(contentsOf: [UInt8](repeating: 0xAB, count: 64)) }
        #expect(h.accessLog.faults.map(\.fault) == [.readOnly])
        #expect(h.iotlb.statistics.faultCount == 0)
        #expect(h.grants.mapper.mappingCount(h.writableBase) == (0, 0), "the script answered; the mapper never mapped the page")
        #expect(h.grants.frames.read(at: h.frameAddress(writable: true, offset: 4096 - 32), count: 64) == [UInt8](repeating: 0, count: 64))
    }

    @Test("GHT-CNF-07, GHT-GNT-06: a hostile granter's revoked entry faults at the real mapper, and the log shows the mapper's fault")
    func hostileGranter() throws {
        var h = try GrantedSplitRingHarness()
        try exposeOne(&h)
        // The front-end clears the readable buffer's entry under the device: no longer granted.
        h.grants.table.entries.store(GrantEntry(flags: [], domain: DomainID(0), frame: 0), at: h.readableBase)
        let chain = try #require(try h.device.popAvailable())
        var reader = h.device.reader(for: chain)
        #expect(throws: ChainAccessError.self) { _ = try reader.readBytes(16) }
        #expect(h.accessLog.faults.map(\.fault) == [.notGranted])
        #expect(h.iotlb.statistics.faults[.notGranted] == 1)
    }

    @Test("GHT-CNF-08, GHT-CNF-09: raw ring writes over handles reach each side exactly as written")
    func rawWrites() throws {
        // Front-end: an indirect table in the granted page whose descriptor points at a handle
        // never granted, written behind the driver's back.
        var h = try GrantedSplitRingHarness()
        let ungranted = GrantHandle(reference: GrantReference(400)).rawValue
        h.writeIndirectTable(atOffset: 256, [Descriptor(address: ungranted, length: 8, flags: [], next: 0)])
        h.writeDescriptor(0, address: h.indirectHandle(offset: 256), length: 16, flags: .indirect)
        h.makeAvailable([0])
        let chain = try #require(try h.device.popAvailable())
        #expect(chain.segments.array.map(\.address) == [ungranted])
        var reader = h.device.reader(for: chain)
        #expect(throws: ChainAccessError.self) { _ = try reader.readBytes(8) }
        #expect(h.accessLog.records.map(\.address) == [h.indirectHandle(offset: 256), ungranted])
        #expect(h.accessLog.faults.map(\.fault) == [.notGranted])

        // Back-end: a used element naming a head the driver never exposed.
        var b = try GrantedSplitRingHarness()
        try exposeOne(&b)
        b.writeUsed(0, id: 5, length: 0)
        b.publishUsed(1)
        #expect(throws: DriverQueueError.self) { _ = try b.driver.reapUsed() }
        #expect(b.driver.isBroken)
        #expect(b.usedElements == [UsedElement(id: 5, length: 0)])
    }
}
