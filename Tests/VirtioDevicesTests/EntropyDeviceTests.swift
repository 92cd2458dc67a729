import Synchronization
import Testing
import VirtioCore
import VirtioDevices
import VirtioTransport
import VirtioSystem

@Suite("Entropy device (virtio-rng)")
struct EntropyDeviceTests {
    @Test("GHT-RNG-01: device ID 4, one queue, no device-type feature, an empty configuration space")
    func identity() {
        let device = EntropyDevice()
        #expect(device.deviceID == 4 && device.queueCount == 1)
        #expect(device.deviceFeatures.isEmpty)
        #expect(device.readConfig().isEmpty)
    }

    @Test("GHT-RNG-02: the whole writable part, across descriptors, is filled from the source and completed with its length; readable bytes are ignored")
    func fillsWritablePart() {
        let counter = Atomic<UInt8>(0)
        let device = EntropyDevice { piece in
            for i in piece.indices { piece[i] = counter.add(1, ordering: .relaxed).newValue }
            return true
        }
        let region = GuestMemoryRegion(size: 1 << 16)
        region.write(Array(repeating: 0xEE, count: 16), at: 0)
        // Request 0: 16 readable bytes, then 10 + 30 writable; request 1: 64 writable only.
        let fragments = [region.range.slice(offset: 0, length: 16), region.range.slice(offset: 0x1000, length: 10),
                         region.range.slice(offset: 0x2000, length: 30), region.range.slice(offset: 0x3000, length: 64)]
        var batch = RequestBatch.testing(fragments: fragments, requests: [(0..<1, 1..<3), (3..<3, 3..<4)])
        device.process(queue: 0, batch: &batch)
        #expect(batch.usedLength(0) == 40 && batch.usedLength(1) == 64)
        #expect(region.read(at: 0x1000, count: 10) + region.read(at: 0x2000, count: 30) == (1...40).map { UInt8($0) })
        #expect(region.read(at: 0x3000, count: 64) == (41...104).map { UInt8($0) })
        #expect(region.read(at: 0, count: 16) == Array(repeating: 0xEE, count: 16), "the readable part is left alone")
        #expect(region.read(at: 0x1000 + 10, count: 1) == [0], "nothing written past a descriptor")
        #expect(device.bytesProduced == 104 && device.requestsFailed == 0)
    }

    @Test("GHT-RNG-02: a failing source completes the request with what was filled before it, counts it, and the next request is served")
    func failingSource() {
        let calls = Atomic<Int>(0)
        let device = EntropyDevice { piece in
            // The second piece handed out fails.
            guard calls.add(1, ordering: .relaxed).newValue != 2 else { return false }
            piece.initializeMemory(as: UInt8.self, repeating: 7)
            return true
        }
        let region = GuestMemoryRegion(size: 1 << 16)
        let fragments = [region.range.slice(offset: 0, length: 8), region.range.slice(offset: 0x1000, length: 8),
                         region.range.slice(offset: 0x2000, length: 8)]
        var batch = RequestBatch.testing(fragments: fragments, requests: [(0..<0, 0..<2), (2..<2, 2..<3)])
        device.process(queue: 0, batch: &batch)
        #expect(batch.usedLength(0) == 8, "the first descriptor was filled, the second failed")
        #expect(batch.usedLength(1) == 8)
        #expect(region.read(at: 0x2000, count: 8) == Array(repeating: 7, count: 8))
        #expect(device.requestsFailed == 1 && device.bytesProduced == 16)
    }

    @Test("GHT-RNG-02: with the kernel's source, 4 KiB of writable buffer get random bytes, different on each request")
    func kernelSource() {
        let device = EntropyDevice()
        let region = GuestMemoryRegion(size: 1 << 16)
        let fragments = [region.range.slice(offset: 0, length: 4096), region.range.slice(offset: 0x1000, length: 4096)]
        var batch = RequestBatch.testing(fragments: fragments, requests: [(0..<0, 0..<1), (1..<1, 1..<2)])
        device.process(queue: 0, batch: &batch)
        #expect(batch.usedLength(0) == 4096 && batch.usedLength(1) == 4096)
        let first = region.read(at: 0, count: 4096), second = region.read(at: 0x1000, count: 4096)
        #expect(Set(first).count > 200, "4 KiB of uniform bytes take nearly every value")
        #expect(first != second)
        #expect(device.requestsFailed == 0)
    }
}
