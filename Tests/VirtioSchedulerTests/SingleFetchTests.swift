import Synchronization
import Testing
import VirtioCore
import VirtioDevices
import VirtioScheduler

#if canImport(Glibc)
import Glibc
#endif
import VirtioSystem

/// A disk of two 1024-sector windows: guest 1's sectors hold 0xA1, guest 2's (the victim's)
/// hold 0xB2.
final class TwoWindowDisk {
    static let window: UInt64 = 1024
    let path = "/tmp/vg-one-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).img"
    let file: StorageFile

    init() throws {
        let fd = open(path, O_CREAT | O_TRUNC | O_RDWR | O_CLOEXEC, 0o600)
        let mine = [UInt8](repeating: 0xA1, count: Int(Self.window) * 512), theirs = [UInt8](repeating: 0xB2, count: Int(Self.window) * 512)
        _ = mine.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        _ = theirs.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(Self.window * 512)) }
        close(fd)
        file = try StorageFile(path: path, writable: true)
    }

    deinit { unlink(path) }

    func sector(_ s: UInt64) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: 512)
        _ = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, 512, off_t(s * 512)) }
        return bytes
    }
}

@Suite("One private copy of each request across the model and the device", .serialized)
struct SingleFetchTests {
    /// Guest 1 (window 0..<1024) on a scheduled block device whose requests get rewritten by
    /// `flip` after the model's check and before the device reads them: a hostile front-end's
    /// second thread, made deterministic (the window a real race would hit).
    func blockGuest(_ disk: TwoWindowDisk, flip: @escaping @Sendable () -> Void) throws -> (DeviceScheduler<BlockDeviceModel>, ScheduledDevice<BlockDeviceModel>) {
        let scheduler = try DeviceScheduler<BlockDeviceModel>(functionCount: 1, configuration: SchedulerConfiguration(mapping: .shared(0)))
        let device = try ScheduledDevice(scheduler: scheduler, rules: BlockDeviceModel.Rules(sectors: 0..<TwoWindowDisk.window),
                                         device: ForwardingDevice(BlockDevice(file: disk.file), beforeProcessing: flip))
        return (scheduler, device)
    }

    @Test("GHT-ONE-01: a blk sector rewritten after the model's check is not what the device reads: the guest gets its own sector, never the other window's")
    func blockHeaderFlip() throws {
        let disk = try TwoWindowDisk()
        let requests = Requests()
        requests.add(blockRequest(.read, sector: 0), writable: 512 + 1)
        let memory = requests.memory
        // The header is the first thing placed: its sector field is at offset 8.
        let (scheduler, device) = try blockGuest(disk) {
            memory.write(withUnsafeBytes(of: TwoWindowDisk.window.littleEndian) { Array($0) }, at: 8)
        }
        defer { scheduler.stop() }
        var batch = requests.batch
        device.process(queue: 0, batch: &batch)
        let reply = requests.writable(0)
        #expect(reply.last == BlockStatus.ok.rawValue)
        #expect(Array(reply.prefix(512)) == [UInt8](repeating: 0xA1, count: 512), "the sector the model allowed, not the flipped one")
        #expect(!reply.contains(0xB2))
    }

    @Test("GHT-ONE-02: a WRITE_ZEROES range rewritten after the model's check still zeroes only the range checked")
    func rangeListFlip() throws {
        let disk = try TwoWindowDisk()
        let requests = Requests()
        requests.add(rangeRequest(.writeZeroes, [BlockRangeSegment(sector: 8, sectorCount: 1), BlockRangeSegment(sector: 9, sectorCount: 1),
                                                 BlockRangeSegment(sector: 10, sectorCount: 1)]), writable: 1)
        let memory = requests.memory
        // The first range's sector is at offset 16 (after the header), the third's at 48.
        let (scheduler, device) = try blockGuest(disk) {
            memory.write(withUnsafeBytes(of: (TwoWindowDisk.window + 8).littleEndian) { Array($0) }, at: 16)
            memory.write(withUnsafeBytes(of: (TwoWindowDisk.window + 10).littleEndian) { Array($0) }, at: 48)
        }
        defer { scheduler.stop() }
        var batch = requests.batch
        device.process(queue: 0, batch: &batch)
        #expect(requests.writable(0) == [BlockStatus.ok.rawValue])
        for sector: UInt64 in 8...10 {
            #expect(disk.sector(sector) == [UInt8](repeating: 0, count: 512), "the ranges checked were zeroed")
            #expect(disk.sector(TwoWindowDisk.window + sector) == [UInt8](repeating: 0xB2, count: 512), "the victim's sectors are untouched")
        }
    }

    @Test("GHT-ONE-03: a net source address rewritten after the model's check is not what the switch forwards")
    func sourceAddressFlip() throws {
        let networkSwitch = NetworkSwitch()
        let sender = NetworkDevice(switch: networkSwitch), victim = NetworkDevice(switch: networkSwitch)
        let scheduler = try DeviceScheduler<NetworkDeviceModel>(functionCount: 1, configuration: SchedulerConfiguration(mapping: .shared(0)))
        defer { scheduler.stop() }
        let requests = Requests()
        requests.add(transmitFrame(source: sender.mac, payload: 50))
        let memory = requests.memory
        // The source address is at offset 12 (virtio-net header) + 6 (destination).
        let device = try ScheduledDevice(scheduler: scheduler, rules: NetworkDeviceModel.Rules(address: sender.mac),
                                         device: ForwardingDevice(sender) { memory.write(victim.mac.array, at: 18) })
        var batch = requests.batch
        device.process(queue: NetworkDeviceModel.transmitQueue, batch: &batch)
        #expect(sender.statistics.framesSent == 1)
        // The frame went out from the sender's own address: the victim received it as a
        // broadcast from the sender, and the switch did not take the victim's address.
        #expect(victim.readyBuffers(queue: NetworkDevice.receiveQueue) == 1)
        let received = Requests()
        received.add([], writable: 2048)
        var rx = received.batch
        victim.process(queue: NetworkDevice.receiveQueue, batch: &rx)
        let frame = Array(received.writable(0)[NetworkHeader.byteCount..<(NetworkHeader.byteCount + 14)])
        #expect(Array(frame[6..<12]) == sender.mac.array, "forwarded from the address the model checked")
        withExtendedLifetime((sender, victim)) {}
    }

    @Test("GHT-ONE-01: the private copy is what the device reads, and the bytes after it still come from the request")
    func commitKeepsTheRest() throws {
        let requests = Requests()
        requests.add(blockRequest(.write, sector: 3, payload: 512))
        var batch = requests.batch
        var staged = batch.staging(0)
        _ = staged.stage(upTo: BlockRequestHeader.byteCount)
        batch.commit(staged)
        requests.memory.write([UInt8](repeating: 0xFF, count: 16), at: 0)
        var reader = batch.reader(0)
        #expect(reader.remaining == 16 + 512)
        #expect(BlockRequestHeader.read(from: &reader) == BlockRequestHeader(type: .write, sector: 3))
        #expect(try reader.readBytes(512) == [UInt8](repeating: 0x5a, count: 512))
    }
}
