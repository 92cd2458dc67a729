import Testing
import VirtioCore
import VirtioDevices
import VirtioTransport

@Suite("Queue processing with a device", .tags(.transport))
struct QueueProcessorTests {
    /// A ring in one region, the driver side, and a processor serving `device`.
    struct Setup {
        let region = GuestMemoryRegion(size: 1 << 20)
        var driver: SplitDriverQueue
        var processor: QueueProcessor<IdentityTranslator>
        let status = DeviceStatusCell([.acknowledge, .driver, .featuresOK, .driverOK])

        init(device: any VirtioDevice, features: VirtioFeatures = [.version1, .eventIndex]) throws {
            let layout = SplitRingLayout(queueSize: 16)!
            let ring = try SplitRing(layout: layout, contiguous: region.range.slice(offset: 0, length: 4096))
            driver = SplitDriverQueue(ring: ring, features: features)
            let queue = try SplitDeviceQueue(queueSize: 16, addresses: SplitRingAddresses(contiguousAt: 0, layout: layout),
                                             memory: region.identityTranslator, features: features, statusCell: status)
            processor = QueueProcessor(queue: queue, index: 0, device: device)
        }
    }

    @Test("GHT-CHN-02, GHT-CHN-03: a batch is resolved, processed by the device and completed")
    func echo() throws {
        let device = ChecksumEchoDevice()
        var s = try Setup(device: device)
        for i in 0..<5 {
            let payload = (0..<(100 * (i + 1))).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ i) }
            s.region.write(payload, at: UInt64(0x10000 + i * 0x2000))
            try s.driver.add(readable: [BufferSegment(address: UInt64(0x10000 + i * 0x2000), length: UInt32(payload.count))],
                             writable: [BufferSegment(address: UInt64(0x11000 + i * 0x2000), length: 4), BufferSegment(address: UInt64(0x11004 + i * 0x2000), length: 2000)],
                             token: UInt64(i))
        }
        s.driver.publish()
        let r = try s.processor.drain()
        #expect(r.processed == 5)
        #expect(r.notify)
        #expect(s.processor.batches == 1)
        while let used = try s.driver.reapUsed() {
            let i = Int(used.token)
            let payload = (0..<(100 * (i + 1))).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ i) }
            #expect(Int(used.writtenLength) == 8 + payload.count)
            let reply = s.region.read(at: UInt64(0x11000 + i * 0x2000), count: 8 + payload.count)
            let sum = reply.prefix(8).reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            #expect(sum == ChecksumEchoDevice.checksum(payload))
            #expect(Array(reply.dropFirst(8)) == payload)
        }
        #expect(device.requestsAnswered == 5)
    }

    @Test("GHT-BRK-04, IOM-DEV-05: a chain naming unreachable memory breaks the queue before the device sees any of the batch")
    func unreachableNeverReachesDevice() throws {
        let device = ChecksumEchoDevice()
        var s = try Setup(device: device)
        try s.driver.add(readable: [BufferSegment(address: 0x10000, length: 8)], writable: [BufferSegment(address: 0x11000, length: 64)], token: 1)
        try s.driver.add(readable: [BufferSegment(address: 0x10000, length: 8)], writable: [BufferSegment(address: 1 << 40, length: 64)], token: 2)
        s.driver.publish()
        #expect(throws: VirtqueueError.memoryFault(TranslationFault(.outOfRange, address: 1 << 40, length: 64, access: .write))) {
            _ = try s.processor.drain()
        }
        #expect(device.requestsAnswered == 0)
        #expect(s.status.status.contains(.deviceNeedsReset))
        #expect(s.region.read(at: 0x11000, count: 8) == [UInt8](repeating: 0, count: 8), "nothing was written")
    }
}
