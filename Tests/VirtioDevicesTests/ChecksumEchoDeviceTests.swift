import Testing
import VirtioCore
import VirtioDevices
import VirtioTransport

@Suite("Checksum echo device")
struct ChecksumEchoDeviceTests {
    @Test("FNV-1a-64 known values")
    func checksumVectors() {
        #expect(ChecksumEchoDevice.checksum([UInt8]()) == 0xcbf2_9ce4_8422_2325)
        #expect(ChecksumEchoDevice.checksum(Array("a".utf8)) == 0xaf63_dc4c_8601_ec8c)
        #expect(ChecksumEchoDevice.checksum(Array("foobar".utf8)) == 0x85944171f73967e8)
    }

    @Test("CFG-DEF-01: the configuration space is little-endian queue count and size")
    func config() {
        #expect(ChecksumEchoDevice(queueCount: 2, maxQueueSize: 512).readConfig() == [2, 0, 0, 0, 0, 2, 0, 0])
    }

    @Test("USD-DEV-02: a reply that does not fit is cut at the writable capacity; below 8 bytes nothing is written")
    func shortReplies() throws {
        let device = ChecksumEchoDevice()
        let region = GuestMemoryRegion(size: 1 << 16)
        region.write(Array(repeating: 3, count: 100), at: 0)
        let request = region.range.slice(offset: 0, length: 100)
        let small = region.range.slice(offset: 0x1000, length: 20)
        let tiny = region.range.slice(offset: 0x2000, length: 7)
        var batch = RequestBatch.testing(fragments: [request, small, request, tiny], requests: [(0..<1, 1..<2), (2..<3, 3..<4)])
        device.process(queue: 0, batch: &batch)
        #expect(batch.usedLength(0) == 20)
        #expect(batch.usedLength(1) == 0)
        #expect(region.read(at: 0x1008, count: 12) == Array(repeating: 3, count: 12))
        #expect(device.requestsAnswered == 2)
    }
}

@Suite("Echo device")
struct EchoDeviceTests {
    @Test("USD-DEV-02: the reply is the request moved across differently split fragments, cut at the writable capacity")
    func transfer() throws {
        let device = EchoDevice()
        let region = GuestMemoryRegion(size: 1 << 16)
        let bytes = (0..<300).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        region.write(bytes, at: 0)
        // Readable: 100 + 200 bytes; writable: 50 + 130 + 500 bytes; a second request with 16 writable bytes.
        let fragments = [region.range.slice(offset: 0, length: 100), region.range.slice(offset: 100, length: 200),
                         region.range.slice(offset: 0x1000, length: 50), region.range.slice(offset: 0x2000, length: 130),
                         region.range.slice(offset: 0x3000, length: 500),
                         region.range.slice(offset: 0, length: 300), region.range.slice(offset: 0x4000, length: 16)]
        var batch = RequestBatch.testing(fragments: fragments, requests: [(0..<2, 2..<5), (5..<6, 6..<7)])
        device.process(queue: 0, batch: &batch)
        #expect(batch.usedLength(0) == 300)
        #expect(region.read(at: 0x1000, count: 50) + region.read(at: 0x2000, count: 130) + region.read(at: 0x3000, count: 120) == bytes)
        #expect(region.read(at: 0x3000 + 120, count: 1) == [0], "nothing written past the request's length")
        #expect(batch.usedLength(1) == 16)
        #expect(region.read(at: 0x4000, count: 16) == Array(bytes[0..<16]))
        #expect(device.requestsAnswered == 2)
    }
}
