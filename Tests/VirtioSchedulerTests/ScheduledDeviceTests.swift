import Testing
import VirtioCore
import VirtioDevices
import VirtioTransport
@testable import VirtioScheduler

@Suite("Scheduled device")
struct ScheduledDeviceTests {
    @Test("GHT-MDL-02: a denied request never reaches the device: it completes with IOERR, the allowed ones are served, the scheduler counts it")
    func deniedNeverReachesDevice() throws {
        let s = try DeviceScheduler<BlockDeviceModel>(functionCount: 1, configuration: configuration(sliceMilliseconds: 1, cutOffMilliseconds: 5000))
        defer { s.stop() }
        let device = RecordingBlockDevice()
        let scheduled = try ScheduledDevice(scheduler: s, rules: BlockDeviceModel.Rules(sectors: 100..<200), device: device)
        let requests = Requests()
        requests.add(blockRequest(.read, sector: 150), writable: 513)                 // allowed
        requests.add(blockRequest(.read, sector: 300), writable: 513)                 // outside the window
        requests.add(blockRequest(.write, sector: 199, payload: 1024), writable: 1)   // runs past the end
        requests.add(blockRequest(.write, sector: 120, payload: 512), writable: 1)    // allowed
        let queueState = QueueState(format: .split, size: 256, nextAvail: 4, nextUsed: 4)
        var batch = RequestBatch.testing(fragments: requests.fragments, requests: requests.spans, queueState: queueState)
        scheduled.process(queue: 0, batch: &batch)

        #expect(!batch.isQueueAbandoned)
        #expect(device.processCalls == 1)
        #expect(device.sectors == [150, 120], "the device saw only the allowed requests")
        #expect(batch.usedLength(0) == 513 && batch.usedLength(3) == 1)
        #expect(requests.writable(0) == [UInt8](repeating: 0, count: 513), "the device's OK")
        #expect(batch.usedLength(1) == 513)
        #expect(requests.writable(1) == [UInt8](repeating: 0, count: 512) + [BlockStatus.ioError.rawValue])
        #expect(batch.usedLength(2) == 1)
        #expect(requests.writable(2) == [BlockStatus.ioError.rawValue])
        let stats = try #require(s.statistics(of: scheduled.guest))
        #expect(stats.denied == 2 && stats.requests == 2 && stats.batches == 1)
        #expect(s.functions[0].inspection.inFlight == 0, "the batch's end is a reusable point")
        #expect(s.functions[0].inspection.registers?.queueStates == [queueState])

        // A batch of denied requests only: the device is not called at all.
        let denied = Requests()
        denied.add(blockRequest(.read, sector: 99), writable: 513)
        denied.add(rangeRequest(.discard, [BlockRangeSegment(sector: 150, sectorCount: 100)]), writable: 1)
        var deniedBatch = denied.batch
        scheduled.process(queue: 0, batch: &deniedBatch)
        #expect(device.processCalls == 1 && device.sectors == [150, 120])
        #expect(denied.writable(0).last == BlockStatus.ioError.rawValue && denied.writable(1) == [BlockStatus.ioError.rawValue])
        #expect(s.statistics(of: scheduled.guest)?.denied == 4)

        // The idle queue ends the turn.
        scheduled.queueIdle(0)
        #expect(s.functions[0].status.state == .idle)
        withExtendedLifetime((requests, denied)) {}
    }

    @Test("GHT-SCH-08: a cut-off guest's next batch is abandoned (its queue breaks) and never reaches the device")
    func cutOffAbandons() throws {
        let s = try DeviceScheduler<BlockDeviceModel>(functionCount: 1, configuration: configuration(sliceMilliseconds: 1, cutOffMilliseconds: 50))
        defer { s.stop() }
        let device = RecordingBlockDevice()
        let scheduled = try ScheduledDevice(scheduler: s, rules: BlockDeviceModel.Rules(sectors: 0..<10), device: device)
        let other = try s.register(rules: BlockDeviceModel.Rules(sectors: 10..<20), queueCount: 1)
        // The scheduled guest holds the function with a request started and never finished.
        let lease = try s.obtain(scheduled.guest)
        _ = try s.withFunction(lease) { model, _ in verdict(&model, blockRequest(.read, sector: 1), writable: 513) }
        sleep(milliseconds: 5)
        let lo = try #require(try PendingObtain(s, other).wait(seconds: 2)?.get())
        let requests = Requests()
        requests.add(blockRequest(.read, sector: 2), writable: 513)
        var batch = requests.batch
        scheduled.process(queue: 0, batch: &batch)
        #expect(batch.isQueueAbandoned)
        #expect(device.processCalls == 0)
        try s.finishBatch(lo, requests: 0, bytes: 0)
        withExtendedLifetime(requests) {}
    }

    @Test("GHT-QST-05: the guest's context holds the queue's own state once each batch is completed, across the ring's wrap")
    func contextHoldsQueueState() throws {
        let s = try DeviceScheduler<OpaqueDeviceModel>(functionCount: 1, configuration: configuration(sliceMilliseconds: 1, cutOffMilliseconds: 5000))
        defer { s.stop() }
        let scheduled = try ScheduledDevice(scheduler: s, rules: OpaqueDeviceModel.Rules(), device: ChecksumEchoDevice())
        let region = GuestMemoryRegion(size: 1 << 20)
        let layout = SplitRingLayout(queueSize: 4)!
        var driver = SplitDriverQueue(ring: try SplitRing(layout: layout, contiguous: region.range.slice(offset: 0, length: 4096)),
                                      features: [.version1])
        let queue = try SplitDeviceQueue(queueSize: 4, addresses: SplitRingAddresses(contiguousAt: 0, layout: layout),
                                         memory: region.identityTranslator, features: [.version1])
        var processor = QueueProcessor(queue: queue, index: 0, device: scheduled)
        var token: UInt64 = 0
        for batch in [2, 1, 2, 2] {
            for _ in 0..<batch {
                try driver.add(readable: [BufferSegment(address: 0x10000, length: 8)],
                               writable: [BufferSegment(address: 0x11000, length: 64)], token: token)
                token += 1
            }
            driver.publish()
            #expect(try processor.drain().processed == batch)
            while try driver.reapUsed() != nil {}
            let saved = s.functions[0].inspection.registers?.queueStates
            #expect(saved == [processor.queue.state], "the context is the queue's state, not a count beside it")
            #expect(saved?[0]?.nextUsed == UInt16(token))
        }
        withExtendedLifetime(region) {}
    }
}
