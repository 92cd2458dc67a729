import Synchronization
import Testing
import VirtioCore
import VirtioDevices
import VirtioSystem
import VirtioTransport

#if canImport(Glibc)
import Glibc
#endif

/// Found by the live-migration run (Spec/restart.md §3): a device that keeps long chains can
/// fill the queue's segment arena; the worker must then wait for their completions, not spin.
@Suite("Queue processing with a full segment arena", .tags(.transport))
struct ArenaFullDrainTests {
    @Test("GHT-LOG-08: a drain that can pop nothing while the device keeps requests returns (the arena is full until they complete); after they complete the next drain pops the rest")
    func drainReturnsWhenArenaIsFull() throws {
        let region = GuestMemoryRegion(size: 1 << 20)
        let status = DeviceStatusCell([.acknowledge, .driver, .featuresOK, .driverOK])
        let layout = SplitRingLayout(queueSize: 16)!
        let ring = try SplitRing(layout: layout, contiguous: region.range.slice(offset: 0, length: 4096))
        let queue = try SplitDeviceQueue(queueSize: 16, addresses: SplitRingAddresses(contiguousAt: 0, layout: layout),
                                         memory: region.identityTranslator, features: [.version1], statusCell: status, overflowBlocks: 1)
        var driver = SplitDriverQueue(ring: ring, features: [.version1])
        let device = DeferringDevice()
        // Two chains of six segments: each needs an overflow block, and there is one.
        for n in 0..<2 {
            let readable = (0..<5).map { BufferSegment(address: UInt64(0x10000 + n * 0x1000 + $0 * 16), length: 8) }
            try driver.add(readable: readable, writable: [BufferSegment(address: UInt64(0x20000 + n * 0x1000), length: 64)], token: UInt64(n))
        }
        driver.publish()
        let box = ProcessorBox(QueueProcessor(queue: queue, index: 0, device: device))
        let returned = Atomic<Bool>(false)
        let thread = WorkerThread(name: "drain") {
            _ = try? box.processor.drain()
            returned.store(true, ordering: .releasing)
        }
        let deadline = SystemClock.monotonic.milliseconds + 3000
        while !returned.load(ordering: .acquiring) && SystemClock.monotonic.milliseconds < deadline { usleep(1000) }
        let didReturn = returned.load(ordering: .acquiring)
        try #require(didReturn, "the drain spins while the arena is full")
        thread.join()
        #expect(device.kept.withLock { $0.count } == 1)
        device.answer()
        #expect(try box.processor.drain().processed == 1)
        device.answer()
        _ = try box.processor.drain()
        var tokens: [UInt64] = []
        while let used = try driver.reapUsed() { tokens.append(used.token) }
        #expect(tokens == [0, 1])
    }
}

/// The processor, for a thread of the test's (it is noncopyable).
private final class ProcessorBox: @unchecked Sendable {
    var processor: QueueProcessor<SplitDeviceQueue<IdentityTranslator>>
    init(_ processor: consuming QueueProcessor<SplitDeviceQueue<IdentityTranslator>>) { self.processor = processor }
}
