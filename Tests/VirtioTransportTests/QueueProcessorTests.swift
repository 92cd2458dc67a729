import Synchronization
import Testing
import VirtioCore
import VirtioDevices
import VirtioGrants
import VirtioTransport

@Suite("Queue processing with a device", .tags(.transport))
struct QueueProcessorTests {
    /// A ring in one region, the driver side, and a processor serving `device`.
    struct Setup: ~Copyable {
        let region: GuestMemoryRegion
        var driver: SplitDriverQueue
        var processor: QueueProcessor<SplitDeviceQueue<IdentityTranslator>>
        let status: DeviceStatusCell

        init(device: any VirtioDevice, features: VirtioFeatures = [.version1, .eventIndex]) throws {
            // Everything that may throw comes first: a noncopyable value is initialized all at once.
            let region = GuestMemoryRegion(size: 1 << 20)
            let status = DeviceStatusCell([.acknowledge, .driver, .featuresOK, .driverOK])
            let layout = SplitRingLayout(queueSize: 16)!
            let ring = try SplitRing(layout: layout, contiguous: region.range.slice(offset: 0, length: 4096))
            let queue = try SplitDeviceQueue(queueSize: 16, addresses: SplitRingAddresses(contiguousAt: 0, layout: layout),
                                             memory: region.identityTranslator, features: features, statusCell: status)
            self.region = region
            self.status = status
            driver = SplitDriverQueue(ring: ring, features: features)
            processor = QueueProcessor(queue: queue, index: 0, device: device)
        }
    }

    @Test("GHT-CHN-02, GHT-CHN-03, VQ-DEF-01: a batch is resolved, processed by the device and completed")
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

/// A device that fills as many buffers as it is told it can (a receive queue's frames).
final class PacedDevice: VirtioDevice, @unchecked Sendable {
    let deviceID: UInt32 = 0xFFFF
    let deviceFeatures: VirtioFeatures = []
    let queueCount = 1
    let maxQueueSize = 16
    let ready = Atomic<Int>(0)
    let filled = Atomic<Int>(0)
    func readConfig() -> [UInt8] { [] }
    func readyBuffers(queue: Int) -> Int? { ready.load(ordering: .relaxed) }
    func process(queue: Int, batch: inout RequestBatch) {
        ready.subtract(batch.count, ordering: .relaxed)
        filled.add(batch.count, ordering: .relaxed)
        for i in 0..<batch.count { batch.complete(i, usedLength: 0) }
    }
    func reset() {}
}

@Suite("Device-paced queues", .tags(.transport))
struct PacedQueueTests {
    @Test("GHT-CHN-06: the back-end pops only as many chains as the device can use, leaves the rest available, and returns at once when it can use none")
    func paced() throws {
        let device = PacedDevice()
        var s = try QueueProcessorTests.Setup(device: device)
        for i in 0..<6 {
            try s.driver.add(readable: [], writable: [BufferSegment(address: UInt64(0x10000 + i * 0x1000), length: 64)], token: UInt64(i))
        }
        s.driver.publish()
        let none = try s.processor.drain()
        #expect(none.processed == 0 && s.processor.isPacedByDevice)
        #expect(s.processor.queue.inFlightCount == 0 && device.filled.load(ordering: .relaxed) == 0)
        device.ready.store(4, ordering: .relaxed)
        #expect(try s.processor.drain().processed == 4)
        #expect(s.processor.isPacedByDevice == true, "two chains stay with the driver")
        var reaped: [UInt64] = []
        while let used = try s.driver.reapUsed() { reaped.append(used.token) }
        #expect(reaped == [0, 1, 2, 3])
        device.ready.store(10, ordering: .relaxed)
        #expect(try s.processor.drain().processed == 2)
        #expect(s.processor.isPacedByDevice == false)
    }
}

@Suite("Queue processing over IOVAs", .tags(.transport))
struct IOVAQueueProcessorTests {
    @Test("GHT-IOVA-06, GHT-IOVA-02: an unmapped buffer gives its chain back and records a miss; the chains before it complete, the rest after the update (split and packed rings)",
          arguments: [false, true])
    func missIsRetriedAfterUpdate(packed: Bool) throws {
        let region = GuestMemoryRegion(size: 1 << 20)
        let space = IOVASpace()
        // The ring and the first 64 KiB of buffers are mapped; 0x10000... is not, yet.
        try space.update(iova: 0xA000_0000, size: 0x10000, host: region.range.slice(offset: 0, length: 0x10000), permissions: .readWrite)
        let cache = IOVACache(space: space)
        let status = DeviceStatusCell([.acknowledge, .driver, .featuresOK, .driverOK])
        let ringBlock = region.range.slice(offset: 0, length: 4096)
        if packed {
            let features: VirtioFeatures = [.version1, .accessPlatform, .ringPacked]
            let layout = PackedRingLayout(queueSize: 16)!
            var driver = PackedDriverQueue(ring: try PackedRing(layout: layout, contiguous: ringBlock), features: features)
            let queue = try PackedDeviceQueue(queueSize: 16, addresses: PackedRingAddresses(contiguousAt: 0xA000_0000, layout: layout),
                                              memory: cache.translator, features: features, statusCell: status)
            try Self.run(&driver, queue, region: region, space: space, status: status)
        } else {
            let features: VirtioFeatures = [.version1, .accessPlatform]
            let layout = SplitRingLayout(queueSize: 16)!
            var driver = SplitDriverQueue(ring: try SplitRing(layout: layout, contiguous: ringBlock), features: features)
            let queue = try SplitDeviceQueue(queueSize: 16, addresses: SplitRingAddresses(contiguousAt: 0xA000_0000, layout: layout),
                                             memory: cache.translator, features: features, statusCell: status)
            try Self.run(&driver, queue, region: region, space: space, status: status)
        }
    }

    @Test("GHT-IOVA-06: an indirect table at an IOVA not mapped yet is a miss, not a violation: nothing is consumed and the chain completes after the update (split and packed rings)",
          arguments: [false, true])
    func indirectTableMiss(packed: Bool) throws {
        let region = GuestMemoryRegion(size: 1 << 20)
        let space = IOVASpace()
        try space.update(iova: 0xA000_0000, size: 0x10000, host: region.range.slice(offset: 0, length: 0x10000), permissions: .readWrite)
        let cache = IOVACache(space: space)
        let status = DeviceStatusCell([.acknowledge, .driver, .featuresOK, .driverOK])
        let ringBlock = region.range.slice(offset: 0, length: 4096)
        // The tables live at 0x20000 (IOVA 0xA002_0000), which is not mapped at first.
        let tables = IndirectTablePool(block: region.range.slice(offset: 0x20000, length: 0x1000), deviceAddress: 0xA002_0000,
                                       tableCount: 4, entriesPerTable: 4)
        let device = EchoDevice()
        func exercise<Driver: DriverQueue, Queue: DeviceQueue & ~Copyable>(_ driver: inout Driver, _ queue: consuming Queue) throws {
            var processor = QueueProcessor(queue: queue, index: 0, device: device)
            region.write(Array(repeating: 7, count: 32), at: 0x8000)
            try driver.add(readable: [BufferSegment(address: 0xA000_8000, length: 16), BufferSegment(address: 0xA000_8010, length: 16)],
                           writable: [BufferSegment(address: 0xA000_9000, length: 32)], token: 5, layout: .indirect)
            driver.publish()
            #expect(try processor.drain().processed == 0 && processor.isWaitingForMapping)
            #expect(!processor.queue.isBroken && !status.status.contains(.deviceNeedsReset))
            #expect(processor.queue.inFlightCount == 0, "nothing was consumed")
            #expect(space.takeMisses().map(\.iova) == [0xA002_0000])
            try space.update(iova: 0xA002_0000, size: 0x1000, host: region.range.slice(offset: 0x20000, length: 0x1000), permissions: .read)
            #expect(try processor.drain().processed == 1 && !processor.isWaitingForMapping)
            #expect(try driver.reapUsed() == UsedBuffer(token: 5, writtenLength: 32))
            #expect(region.read(at: 0x9000, count: 32) == Array(repeating: 7, count: 32))
        }
        if packed {
            let features: VirtioFeatures = [.version1, .accessPlatform, .ringPacked, .indirectDescriptors]
            let layout = PackedRingLayout(queueSize: 16)!
            var driver = PackedDriverQueue(ring: try PackedRing(layout: layout, contiguous: ringBlock), features: features, indirectTables: tables)
            try exercise(&driver, try PackedDeviceQueue(queueSize: 16, addresses: PackedRingAddresses(contiguousAt: 0xA000_0000, layout: layout),
                                                       memory: cache.translator, features: features, statusCell: status))
        } else {
            let features: VirtioFeatures = [.version1, .accessPlatform, .indirectDescriptors]
            let layout = SplitRingLayout(queueSize: 16)!
            var driver = SplitDriverQueue(ring: try SplitRing(layout: layout, contiguous: ringBlock), features: features, indirectTables: tables)
            try exercise(&driver, try SplitDeviceQueue(queueSize: 16, addresses: SplitRingAddresses(contiguousAt: 0xA000_0000, layout: layout),
                                                      memory: cache.translator, features: features, statusCell: status))
        }
    }

    static func run<Driver: DriverQueue, Queue: DeviceQueue & ~Copyable>(_ driver: inout Driver, _ queue: consuming Queue, region: GuestMemoryRegion,
                                                              space: IOVASpace, status: DeviceStatusCell) throws {
        let device = EchoDevice()
        var processor = QueueProcessor(queue: queue, index: 0, device: device)
        let buffers: [(UInt64, UInt64)] = [(0x8000, 0x9000), (0x10000, 0x11000), (0xA000, 0xB000)]
        for (i, (request, reply)) in buffers.enumerated() {
            region.write(Array(repeating: UInt8(i + 1), count: 32), at: request)
            try driver.add(readable: [BufferSegment(address: 0xA000_0000 + request, length: 32)],
                           writable: [BufferSegment(address: 0xA000_0000 + reply, length: 32)], token: UInt64(i))
        }
        driver.publish()
        let first = try processor.drain()
        #expect(first.processed == 1 && processor.isWaitingForMapping)
        #expect(!processor.queue.isBroken && !status.status.contains(.deviceNeedsReset))
        #expect(try driver.reapUsed() == UsedBuffer(token: 0, writtenLength: 32))
        #expect(try driver.reapUsed() == nil)
        #expect(space.takeMisses().map(\.iova) == [0xA001_0000])
        #expect(device.requestsAnswered == 1, "nothing of the unmapped chain reached the device")
        // Still unmapped: another attempt gives it back again.
        #expect(try processor.drain().processed == 0 && processor.isWaitingForMapping)
        try space.update(iova: 0xA001_0000, size: 0x10000, host: region.range.slice(offset: 0x10000, length: 0x10000), permissions: .readWrite)
        let second = try processor.drain()
        #expect(second.processed == 2 && !processor.isWaitingForMapping)
        #expect(try driver.reapUsed() == UsedBuffer(token: 1, writtenLength: 32))
        #expect(try driver.reapUsed() == UsedBuffer(token: 2, writtenLength: 32))
        #expect(region.read(at: 0x11000, count: 32) == Array(repeating: 2, count: 32))
        #expect(region.read(at: 0xB000, count: 32) == Array(repeating: 3, count: 32))
    }
}
