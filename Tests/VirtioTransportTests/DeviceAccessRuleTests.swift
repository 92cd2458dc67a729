import Testing
import VirtioConformance
import VirtioCore
import VirtioDevices
import VirtioTransport

/// The guest-physical translator of a region, logging every translation the device asks for:
/// the access trace of REQUIREMENTS' SPL-DEV-02 and SPL-DEV-03.
final class TracingTranslator: MemoryTranslator, @unchecked Sendable {
    struct Access: Equatable {
        let address: UInt64
        let length: Int
        let access: MemoryAccess
    }
    let inner: IdentityTranslator
    let log = Locked<[Access]>([])

    init(_ inner: IdentityTranslator) { self.inner = inner }

    func resolve(_ address: UInt64, length: Int, access: MemoryAccess) -> TranslationResult {
        log.withLock { $0.append(Access(address: address, length: length, access: access)) }
        return inner.resolve(address, length: length, access: access)
    }

    /// The logged accesses of kind `access` that overlap `[start, end)`.
    func accesses(_ access: MemoryAccess, overlapping start: UInt64, _ end: UInt64) -> [Access] {
        log.withLock { $0.filter { $0.access == access && $0.address < end && start < $0.address + UInt64(max($0.length, 1)) } }
    }
}

/// A device that completes the requests of each batch in reverse order, the last one first (a
/// device whose requests finish with different latencies), echoing the checksum device.
final class ReversingDevice: VirtioDevice, @unchecked Sendable {
    let deviceID: UInt32 = 0xFFFF
    let deviceFeatures: VirtioFeatures = []
    let queueCount = 1
    let maxQueueSize = 64
    let echo = ChecksumEchoDevice()
    func readConfig() -> [UInt8] { [] }
    func process(queue: Int, batch: inout RequestBatch) {
        for i in (0..<batch.count).reversed() {
            var part = batch.selecting([i])
            echo.process(queue: queue, batch: &part)
            batch.merge(part, at: [i])
        }
    }
    func reset() {}
}

@Suite("Device access to guest memory and completion order", .tags(.transport))
struct DeviceAccessRuleTests {
    @Test("SPL-DEV-02, SPL-DEV-03: serving random chains, direct and indirect, the back-end never reads a device-writable buffer and never writes the descriptor table or an indirect table")
    func accessTrace() throws {
        let region = GuestMemoryRegion(size: 4 << 20)
        let layout = SplitRingLayout(queueSize: 32)!
        let tracer = TracingTranslator(region.identityTranslator)
        let features: VirtioFeatures = [.version1, .indirectDescriptors, .eventIndex]
        let ring = try SplitRing(layout: layout, contiguous: region.range.slice(offset: 0x1000, length: layout.contiguousOffsets.totalSize))
        let tables: (UInt64, Int) = (0x10000, IndirectTablePool.byteCount(tableCount: 8, entriesPerTable: 8))
        let pool = IndirectTablePool(block: region.range.slice(offset: Int(tables.0), length: tables.1), deviceAddress: tables.0,
                                     tableCount: 8, entriesPerTable: 8)
        var driver = SplitDriverQueue(ring: ring, features: features, indirectTables: pool)
        let queue = try SplitDeviceQueue(queueSize: 32, addresses: SplitRingAddresses(contiguousAt: 0x1000, layout: layout), memory: tracer,
                                         features: features, statusCell: DeviceStatusCell([.acknowledge, .driver, .featuresOK, .driverOK]))
        var processor = QueueProcessor(queue: queue, index: 0, device: ChecksumEchoDevice())
        let descriptorTable = (UInt64(0x1000), UInt64(0x1000 + 16 * layout.count))
        var random = SplitMix64(seed: 0x5eed)
        var writable: [(UInt64, UInt64)] = []
        var served = 0
        for round in 0..<40 {
            for k in 0..<Int.random(in: 1...6, using: &random) {
                let base = UInt64(0x40000 + ((round * 6 + k) % 64) * 0x8000)
                let r = Int.random(in: 1...3, using: &random), w = Int.random(in: 1...3, using: &random)
                let readable = (0..<r).map { BufferSegment(address: base + UInt64($0) * 0x800, length: UInt32.random(in: 1...0x800, using: &random)) }
                let writes = (0..<w).map { BufferSegment(address: base + 0x4000 + UInt64($0) * 0x1000, length: UInt32.random(in: 8...0x1000, using: &random)) }
                for s in writes { writable.append((s.address, s.address + UInt64(s.length))) }
                guard (try? driver.add(readable: readable, writable: writes, token: UInt64(served))) != nil else { break }
                served += 1
            }
            driver.publish()
            let before = region.read(at: descriptorTable.0, count: Int(descriptorTable.1 - descriptorTable.0))
            let tablesBefore = region.read(at: tables.0, count: tables.1)
            _ = try processor.drain(batchLimit: 4)
            #expect(region.read(at: descriptorTable.0, count: Int(descriptorTable.1 - descriptorTable.0)) == before, "round \(round)")
            #expect(region.read(at: tables.0, count: tables.1) == tablesBefore, "round \(round)")
            while try driver.reapUsed() != nil {}
        }
        #expect(processor.processed == served && served > 100)
        #expect(tracer.accesses(.read, overlapping: 0x40000, 0x40000 + 64 * 0x8000).count > 0, "the trace holds the payload reads")
        for (start, end) in writable {
            let reads = tracer.accesses(.read, overlapping: start, end)
            #expect(reads.isEmpty, "device-writable [0x\(String(start, radix: 16)), 0x\(String(end, radix: 16))) read: \(reads)")
        }
        #expect(tracer.accesses(.write, overlapping: descriptorTable.0, descriptorTable.1).isEmpty, "the descriptor table is never writable")
        #expect(tracer.accesses(.write, overlapping: tables.0, tables.0 + UInt64(tables.1)).isEmpty, "indirect tables are never writable")
    }

    @Test("INO-DEV-01: with IN_ORDER a device that finishes requests out of order still has them used in the order they were made available (split and packed)",
          arguments: [false, true])
    func inOrderCompletion(packed: Bool) throws {
        let region = GuestMemoryRegion(size: 1 << 20)
        let features: VirtioFeatures = packed ? [.version1, .inOrder, .ringPacked] : [.version1, .inOrder]
        let status = DeviceStatusCell([.acknowledge, .driver, .featuresOK, .driverOK])
        let device = ReversingDevice()
        var random = SplitMix64(seed: packed ? 2 : 1)
        var submitted: [UsedBuffer] = [], used: [UsedBuffer] = []
        var next: UInt64 = 0
        // Requests of 1 to 3 readable descriptors, so that heads are not consecutive; the device
        // sees batches of up to 3 and completes each batch last request first.
        func post(_ add: ([BufferSegment], [BufferSegment], UInt64) throws -> Void) {
            for _ in 0..<Int.random(in: 1...5, using: &random) {
                let parts = Int.random(in: 1...3, using: &random)
                let readable = (0..<parts).map { BufferSegment(address: 0x10000 + UInt64($0) * 0x100, length: 16) }
                let writable = [BufferSegment(address: 0x20000 + (next % 32) * 0x100, length: 64)]
                guard (try? add(readable, writable, next)) != nil else { return }
                submitted.append(UsedBuffer(token: next, writtenLength: UInt32(8 + 16 * parts)))   // what the echo writes
                next += 1
            }
        }
        if packed {
            let layout = PackedRingLayout(queueSize: 16)!
            let ring = try PackedRing(layout: layout, contiguous: region.range.slice(offset: 0x1000, length: layout.contiguousOffsets.totalSize))
            var driver = PackedDriverQueue(ring: ring, features: features)
            var processor = QueueProcessor(queue: PackedDeviceQueue(ring: ring, memory: region.identityTranslator, features: features, statusCell: status),
                                           index: 0, device: device)
            for _ in 0..<60 {
                post { try driver.add(readable: $0, writable: $1, token: $2) }
                _ = try processor.drain(batchLimit: 3)
                try driver.reapAllUsed { used.append($0) }
            }
        } else {
            let layout = SplitRingLayout(queueSize: 16)!
            let ring = try SplitRing(layout: layout, contiguous: region.range.slice(offset: 0x1000, length: layout.contiguousOffsets.totalSize))
            var driver = SplitDriverQueue(ring: ring, features: features)
            var processor = QueueProcessor(queue: SplitDeviceQueue(ring: ring, memory: region.identityTranslator, features: features, statusCell: status),
                                           index: 0, device: device)
            for _ in 0..<60 {
                post { try driver.add(readable: $0, writable: $1, token: $2) }
                driver.publish()
                _ = try processor.drain(batchLimit: 3)
                try driver.reapAllUsed { used.append($0) }
            }
        }
        #expect(used.count > 100 && used.count == submitted.count)
        #expect(used == submitted, "used out of submission order, or (packed) a batch boundary moved")
        #expect(!status.status.contains(.deviceNeedsReset))
    }
}
