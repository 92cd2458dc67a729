import Synchronization
import Testing
import VirtioCore
import VirtioDevices
import VirtioScheduler
import VirtioTransport

#if canImport(Glibc)
import Glibc
#endif
import VirtioSystem

/// One disk image shared by two guests over real vhost-user connections: each connection is
/// a ScheduledDevice over a BlockDevice of the whole disk, guest k owning sectors
/// [(k-1)·1024, k·1024). Only the device model stands between a guest and the other's sectors.
final class SharedDiskFixture {
    static let window: UInt64 = 1024
    let imagePath: String
    let socketPath: String
    let scheduler: DeviceScheduler<BlockDeviceModel>
    let backEnd: BackEnd
    var frontEnds: [FrontEnd] = []
    let executed = RequestCounter()

    init() throws {
        let tag = "\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        imagePath = "/tmp/vg-sched-blk-\(tag).img"
        socketPath = "/tmp/vg-sched-blk-\(tag).sock"
        let fd = open(imagePath, O_CREAT | O_TRUNC | O_RDWR | O_CLOEXEC, 0o600)
        precondition(fd >= 0 && ftruncate(fd, off_t(2 * Self.window * 512)) == 0)
        close(fd)
        let file = try StorageFile(path: imagePath, writable: true)
        let scheduler = try DeviceScheduler<BlockDeviceModel>(functionCount: 1, configuration: SchedulerConfiguration(mapping: .shared(0)))
        self.scheduler = scheduler
        let connections = RequestCounter()
        let executed = self.executed
        backEnd = try BackEnd(socketPath: socketPath) {
            let k = UInt64(connections.add(1))
            let rules = BlockDeviceModel.Rules(sectors: (k - 1) * Self.window..<k * Self.window)
            return try! ScheduledDevice(scheduler: scheduler, rules: rules, device: ForwardingDevice(BlockDevice(file: file), counting: executed))
        }
        backEnd.start()
        for _ in 0..<2 {
            var configuration = FrontEndConfiguration()
            configuration.deviceFeatures = [.blockFlush]
            frontEnds.append(try FrontEnd.connect(socketPath: socketPath, configuration: configuration))
        }
    }

    deinit {
        for f in frontEnds { f.close() }
        backEnd.stop()
        scheduler.stop()
        unlink(imagePath)
    }

    /// One request from guest `g` (1-based); the reply's bytes.
    func request(_ g: Int, _ header: BlockRequestHeader, payload: [UInt8] = [], replyCapacity: Int = 1) throws -> [UInt8] {
        let q = frontEnds[g - 1].queues[0]
        _ = try q.submit(header.bytes + payload, replyCapacity: replyCapacity)
        try q.publish()
        return try q.waitForCompletions().first?.reply ?? []
    }

    func image(sector: UInt64, count: Int) -> [UInt8] {
        let fd = open(imagePath, O_RDONLY | O_CLOEXEC)
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: count)
        _ = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, count, off_t(sector * 512)) }
        return bytes
    }
}

/// A count shared across threads.
final class RequestCounter: Sendable {
    private let count = Locked(0)
    @discardableResult func add(_ n: Int) -> Int { count.withLock { $0 += n; return $0 } }
    var value: Int { count.withLock { $0 } }
}

/// A device in front of `inner` that counts the requests reaching it and runs
/// `beforeProcessing` (a stall, for instance) before handing each batch on.
final class ForwardingDevice: VirtioDevice {
    let inner: any VirtioDevice
    let requests: RequestCounter
    let beforeProcessing: @Sendable () -> Void

    init(_ inner: any VirtioDevice, counting requests: RequestCounter = RequestCounter(),
         beforeProcessing: @escaping @Sendable () -> Void = {}) {
        self.inner = inner
        self.requests = requests
        self.beforeProcessing = beforeProcessing
    }

    var deviceID: UInt32 { inner.deviceID }
    var deviceFeatures: VirtioFeatures { inner.deviceFeatures }
    var queueCount: Int { inner.queueCount }
    var maxQueueSize: Int { inner.maxQueueSize }
    func readConfig() -> [UInt8] { inner.readConfig() }
    func reset() { inner.reset() }
    func process(queue: Int, batch: inout RequestBatch) {
        requests.add(batch.count)
        beforeProcessing()
        inner.process(queue: queue, batch: &batch)
    }
}

@Suite("A disk shared by guests through the scheduler", .serialized)
struct ScheduledBlockTests {
    let ok = BlockStatus.ok.rawValue, ioError = BlockStatus.ioError.rawValue

    @Test("GHT-MDL-03: a blk guest's request outside its sectors is denied before the disk is touched; inside it works")
    func sectorWindows() throws {
        let f = try SharedDiskFixture()
        let mine = [UInt8](repeating: 0xA1, count: 1024), theirs = [UInt8](repeating: 0xB2, count: 512)
        #expect(try f.request(1, BlockRequestHeader(type: .write, sector: 1022), payload: mine).last == ok)
        #expect(try f.request(2, BlockRequestHeader(type: .write, sector: 1024), payload: theirs).last == ok)
        #expect(f.executed.value == 2)
        // Guest 1 straddles into guest 2's window, writes inside it, reads it: all denied.
        #expect(try f.request(1, BlockRequestHeader(type: .write, sector: 1023), payload: mine).last == ioError)
        #expect(try f.request(1, BlockRequestHeader(type: .write, sector: 1024), payload: [UInt8](repeating: 0xEE, count: 512)).last == ioError)
        let peek = try f.request(1, BlockRequestHeader(type: .read, sector: 1024), replyCapacity: 513)
        #expect(peek.last == ioError && peek.dropLast().allSatisfy { $0 == 0 }, "no byte of guest 2's sector comes back")
        #expect(try f.request(2, BlockRequestHeader(type: .read, sector: UInt64.max), replyCapacity: 513).last == ioError)
        #expect(f.executed.value == 2, "denied requests never reached the device")
        #expect(f.image(sector: 1024, count: 512) == theirs)
        #expect(f.image(sector: 1022, count: 1024) == mine)
        let back = try f.request(2, BlockRequestHeader(type: .read, sector: 1024), replyCapacity: 513)
        #expect(back.last == ok && Array(back.dropLast()) == theirs)
        let stats = try #require(f.scheduler.statistics(of: DomainID(1)))
        #expect(stats.denied == 3)
    }

    @Test("GHT-MDL-02: a DMA to a handle the guest never granted is refused before the model or the device sees it; the queue breaks")
    func ungrantedHandle() throws {
        let f = try SharedDiskFixture()
        let q = f.frontEnds[0].queues[0]
        try q.submit(readable: [BufferSegment(address: f.frontEnds[0].forbiddenAddress, length: 16)],
                     writable: [BufferSegment(address: f.frontEnds[0].forbiddenAddress, length: 1)])
        try q.publish()
        #expect(throws: FrontEndError.deviceNeedsReset(queue: 0)) { _ = try q.waitForCompletions() }
        #expect(f.executed.value == 0)
        #expect(f.scheduler.statistics(of: DomainID(1))?.requests == 0)
        #expect(f.scheduler.functions[0].inspection.inFlight == 0)
        // The other guest is served as before.
        #expect(try f.request(2, BlockRequestHeader(type: .write, sector: 1030), payload: [UInt8](repeating: 7, count: 512)).last == ok)
    }
}
