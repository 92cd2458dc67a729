import Synchronization
import Testing
import VirtioConformance
import VirtioCore
import VirtioGrants
import VirtioTransport

/// A device that runs a check on each batch before completing it (writing one byte per
/// request), or gives the queue up.
final class InspectingDevice: VirtioDevice, @unchecked Sendable {
    let deviceID: UInt32 = 0xFFFF
    let deviceFeatures: VirtioFeatures = []
    let queueCount = 1
    let maxQueueSize = 256
    var inspect: (RequestBatch) -> Void = { _ in }
    var abandon = false
    private(set) var batchSizes: [Int] = []
    func readConfig() -> [UInt8] { [] }
    func process(queue: Int, batch: inout RequestBatch) {
        batchSizes.append(batch.count)
        inspect(batch)
        if abandon { return batch.abandonQueue() }
        for i in 0..<batch.count {
            var writer = batch.writer(i)
            try? writer.write(UInt8(0xD0))
            batch.complete(i, with: writer)
        }
    }
    func reset() {}
}

/// `hostile-peers.md` §2 at the queue: the quiescent point comes only after a batch's chains are
/// completed or abandoned, and a batch ends early rather than hold too many parked grants.
@Suite("Grants in use for the whole DMA: the queue's batches", .tags(.transport))
struct InFlightBatchTests {
    /// A grant-mode queue whose IOTLB has 4 entries, with `count` chains each writing one page of
    /// the writable run, all hashing to one IOTLB slot; the processor quiesces the IOTLB.
    static func conflictingQueue(_ device: InspectingDevice, count: Int) throws -> ConflictingQueue {
        var h = try GrantedSplitRingHarness(queueSize: 16, iotlbEntries: 4)
        let slot = h.iotlb.slot(of: h.writableBase)
        let pages = Array((0..<GrantedSplitRingHarness.writableFrames.count).filter { h.iotlb.slot(of: h.writableBase.advanced(by: $0)) == slot }.prefix(count))
        try #require(pages.count == count)
        for (k, page) in pages.enumerated() {
            try h.driver.add(readable: [], writable: [BufferSegment(address: h.handle(writable: true, offset: page * 4096), length: 64)],
                             token: UInt64(k))
        }
        h.driver.publish()
        let iotlb = h.iotlb
        let refs = pages.map { h.writableBase.advanced(by: $0) }
        // The harness's device queue moves into the processor (it is noncopyable: no alias).
        let (grants, status, driver) = (h.grants, h.status, h.driver)
        let processor = QueueProcessor(queue: h.takeDevice(), index: 0, device: device, quiescentPoint: { iotlb.quiesce() })
        return ConflictingQueue(grants: grants, iotlb: iotlb, status: status, driver: driver, processor: processor, refs: refs)
    }

    /// What ``conflictingQueue(_:count:)`` sets up: the harness's parts and the processor.
    struct ConflictingQueue: ~Copyable {
        let grants: GrantHarness
        let iotlb: GrantIOTLB
        let status: DeviceStatusCell
        var driver: SplitDriverQueue
        var processor: QueueProcessor<SplitDeviceQueue<LoggingTranslator<GrantTranslator>>>
        let refs: [GrantReference]
    }

    @Test("GHT-DMA-01: while the device processes a batch, every chain's grant shows its in-use bit and end of access reports busy; after the batch the evicted ones are released")
    func inUseDuringProcess() throws {
        let device = InspectingDevice()
        var h = try Self.conflictingQueue(device, count: 3)
        let refs = h.refs
        let seen = Mutex<[Bool]>([])
        let table = h.grants.table
        device.inspect = { _ in
            for ref in refs {
                let marked = table.entry(ref).flags.contains(.writing)
                let busy = (try? table.endAccess(ref)) == .busy
                seen.withLock { $0.append(marked && busy) }
            }
        }
        let r = try h.processor.drain()
        #expect(r.processed == 3)
        #expect(seen.withLock { $0 } == [true, true, true])
        for ref in refs.dropLast() { #expect(try h.grants.table.endAccess(ref) == .ended, "released at the quiescent point") }
        #expect(h.iotlb.parkedCount == 0)
    }

    @Test("GHT-DMA-02: a batch the device abandons breaks the queue and releases its parked grants (the chains are no longer in flight)")
    func abandonedReleases() throws {
        let device = InspectingDevice()
        device.abandon = true
        var h = try Self.conflictingQueue(device, count: 3)
        let refs = h.refs
        #expect(throws: VirtqueueError.abandonedByDevice) { _ = try h.processor.runBatch() }
        #expect(h.iotlb.parkedCount == 0)
        for ref in refs.dropLast() { #expect(h.grants.mapper.mappingCount(ref) == (0, 0)) }
    }

    @Test("GHT-DMA-03: a batch ends at the chain where half the parking list is used; every chain is still served, in several batches, and the queue does not break")
    func batchEndsEarly() throws {
        let device = InspectingDevice()
        var h = try Self.conflictingQueue(device, count: 6)
        let r = try h.processor.drain(batchLimit: 64)
        #expect(r.processed == 6)
        #expect(device.batchSizes.count > 1, "the batch was cut: \(device.batchSizes)")
        #expect(device.batchSizes.allSatisfy { $0 <= 3 }, "4 entries: at most 2 parked, 3 chains per batch")
        #expect(!h.status.status.contains(.deviceNeedsReset))
        var used = 0
        while try h.driver.reapUsed() != nil { used += 1 }
        #expect(used == 6)
    }
}
