import Synchronization
import Testing
import VirtioCore
import VirtioDevices
import VirtioScheduler
@testable import VirtioTransport

#if canImport(Glibc)
import Glibc
#endif

/// What the hostile guest does when the back-end is between the model's check and the
/// device's read (set once the guest is connected).
final class GuestFlip: Sendable {
    let action = Mutex<(@Sendable () -> Void)?>(nil)
    func run() { action.withLock { $0 }?() }
}

@Suite("One private copy of each request, over a real session", .serialized)
struct SingleFetchSessionTests {
    /// A read header whose reserved field carries `marker`, so that the guest finds it again
    /// in its own shared memory.
    static func markedRead(sector: UInt64, marker: UInt32) -> [UInt8] {
        withUnsafeBytes(of: (BlockRequestType.read.rawValue.littleEndian, marker.littleEndian, sector.littleEndian)) { Array($0) }
    }

    @Test("GHT-ONE-01: a guest rewriting its blk header in its own memory after the model's check reads its own sector, never another window's")
    func headerFlipOverSession() throws {
        let disk = try TwoWindowDisk()
        let socket = "/tmp/vg-one-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
        let scheduler = try DeviceScheduler<BlockDeviceModel>(functionCount: 1, configuration: SchedulerConfiguration(mapping: .shared(0)))
        defer { scheduler.stop() }
        let flip = GuestFlip(), file = disk.file
        let backEnd = try BackEnd(socketPath: socket) {
            try! ScheduledDevice(scheduler: scheduler, rules: BlockDeviceModel.Rules(sectors: 0..<TwoWindowDisk.window),
                                 device: ForwardingDevice(BlockDevice(file: file)) { flip.run() })
        }
        backEnd.start()
        defer { backEnd.stop() }
        var configuration = FrontEndConfiguration()
        configuration.deviceFeatures = [.blockFlush]
        let guest = try FrontEnd.connect(socketPath: socket, configuration: configuration)
        defer { guest.close() }
        let marker: UInt32 = 0xC0DE_F11B
        let memory = guest.pool.readable.range   // request headers live in the device-readable file (GHT-HBE-03)
        // The guest's second thread, made deterministic: it rewrites the sector of the request
        // carrying the marker, through the guest's own mapping of the shared memory.
        flip.action.withLock {
            $0 = {
                // Atomic words, as a racing CPU would access them: the front-end writes its rings
                // with atomics too, and ThreadSanitizer must not take the test's own race for ours.
                memory.withUnsafeMutableBytes { bytes in
                    let words = bytes.baseAddress!.assumingMemoryBound(to: Atomic<UInt64>.self)
                    for w in 0..<(bytes.count / 8 - 1)
                    where UInt32(truncatingIfNeeded: UInt64(littleEndian: words[w].load(ordering: .relaxed)) >> 32) == marker {
                        words[w + 1].store(TwoWindowDisk.window.littleEndian, ordering: .relaxed)
                    }
                }
            }
        }
        let q = guest.queues[0]
        _ = try q.submit(Self.markedRead(sector: 0, marker: marker), replyCapacity: 512 + 1)
        try q.publish()
        let reply = try #require(try q.waitForCompletions(timeoutMilliseconds: 10_000).first?.reply)
        #expect(reply.last == BlockStatus.ok.rawValue)
        #expect(Array(reply.prefix(512)) == [UInt8](repeating: 0xA1, count: 512), "the guest's own sector")
        #expect(!reply.contains(0xB2), "never the other window's")
    }
}
