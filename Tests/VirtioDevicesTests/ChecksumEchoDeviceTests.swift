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
        var batch = RequestBatch.testing(fragments: [request, small, request, tiny], spans: [(0..<1, 1..<2), (2..<3, 3..<4)])
        device.process(queue: 0, batch: &batch)
        #expect(batch.usedLength(0) == 20)
        #expect(batch.usedLength(1) == 0)
        #expect(region.read(at: 0x1008, count: 12) == Array(repeating: 3, count: 12))
        #expect(device.requestsAnswered == 2)
    }
}
