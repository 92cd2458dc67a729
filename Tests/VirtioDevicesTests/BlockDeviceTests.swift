import Testing
import VirtioCore
import VirtioDevices
import VirtioTransport

#if canImport(Glibc)
import Glibc
#endif
import VirtioSystem

/// A block device over a temporary image, served by a real back-end to a real front-end over
/// a unix socket: the requests below travel as a Linux driver's would.
final class BlockFixture {
    static let sectors = 2048
    let imagePath: String
    let socketPath: String
    let device: BlockDevice
    let backEnd: BackEnd
    let frontEnd: FrontEnd
    var queue: FrontEndQueue { frontEnd.queues[0] }
    let ownsImage: Bool

    /// `aio` and `direct` choose the device's I/O path (GHT-BLK-13, GHT-BLK-24); `configure`
    /// adjusts the rest; `wrap` serves the device through another (a forwarding wrapper).
    init(mode: FrontEndConfiguration.AddressMode = .grants, readOnly: Bool = false, queues: Int = 1,
         aio: BlockDevice.AsynchronousIO = .ioUring, direct: Bool = false, image: String? = nil, execution: QueueExecution = .sleeping,
         configure: (inout BlockDevice.Configuration) -> Void = { _ in },
         wrap: @escaping @Sendable (BlockDevice) -> any VirtioDevice = { $0 }) throws {
        let tag = "\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        ownsImage = image == nil
        imagePath = image ?? "/tmp/vg-blk-\(tag).img"
        socketPath = "/tmp/vg-blk-\(tag).sock"
        if image == nil {
            let fd = open(imagePath, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0o600)
            precondition(fd >= 0)
            let bytes = Self.pattern(count: Self.sectors * 512, seed: 7)
            precondition(bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) } == bytes.count)
            Glibc.close(fd)
        }
        var configuration = BlockDevice.Configuration()
        configuration.readOnly = readOnly
        configuration.queueCount = queues
        configuration.serial = "vg-test-serial-0123456789"
        configuration.asynchronousIO = aio
        configure(&configuration)
        let device = BlockDevice(file: try StorageFile(path: imagePath, writable: !readOnly, direct: direct), configuration: configuration)
        self.device = device
        var serving = BackEndConfiguration()
        serving.execution = execution
        backEnd = try BackEnd(socketPath: socketPath, configuration: serving) { wrap(device) }
        backEnd.start()
        var front = FrontEndConfiguration()
        front.mode = mode
        front.queueCount = queues
        front.deviceFeatures = [.blockDiscard, .blockWriteZeroes, .blockFlush, .blockMultiQueue, .blockReadOnly, .blockSize]
        do {
            frontEnd = try FrontEnd.connect(socketPath: socketPath, configuration: front)
        } catch {
            backEnd.stop()
            throw error
        }
    }

    deinit {
        frontEnd.close()
        backEnd.stop()
        if ownsImage { unlink(imagePath) }
    }

    /// Deterministic bytes.
    static func pattern(count: Int, seed: UInt64) -> [UInt8] {
        var state = seed | 1
        return (0..<count).map { _ in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return UInt8(truncatingIfNeeded: state >> 33)
        }
    }

    /// The image's bytes as the host file holds them.
    func image(at offset: Int, count: Int) -> [UInt8] {
        let fd = open(imagePath, O_RDONLY | O_CLOEXEC)
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: count)
        let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, count, off_t(offset)) }
        return Array(bytes.prefix(max(0, n)))
    }

    var imageSize: Int {
        var info = stat()
        stat(imagePath, &info)
        return Int(info.st_size)
    }

    /// Sends one request (header and payload split over `parts` readable descriptors) and
    /// returns the writable bytes the device reported.
    func request(_ header: BlockRequestHeader, payload: [UInt8] = [], replyCapacity: Int = 1, parts: Int = 1,
                 queue: Int = 0) throws -> [UInt8] {
        try raw(header.bytes + payload, replyCapacity: replyCapacity, parts: parts, queue: queue)
    }

    /// Sends arbitrary request bytes.
    func raw(_ request: [UInt8], replyCapacity: Int, parts: Int = 1, queue: Int = 0) throws -> [UInt8] {
        let q = frontEnd.queues[queue]
        let token = try q.submit(request, replyCapacity: replyCapacity, parts: parts)
        try q.publish()
        let completions = try q.waitForCompletions()
        #expect(completions.count == 1 && completions[0].token == token)
        return completions.first?.reply ?? []
    }

    func read(sector: UInt64, bytes: Int, parts: Int = 1) throws -> (data: [UInt8], status: UInt8?) {
        let reply = try request(BlockRequestHeader(type: .read, sector: sector), replyCapacity: bytes + 1, parts: parts)
        return (Array(reply.dropLast()), reply.last)
    }

    func write(sector: UInt64, _ data: [UInt8], parts: Int = 1) throws -> UInt8? {
        try request(BlockRequestHeader(type: .write, sector: sector), payload: data, parts: parts).last
    }
}

let ok = BlockStatus.ok.rawValue, ioError = BlockStatus.ioError.rawValue, unsupported = BlockStatus.unsupported.rawValue

@Suite("virtio-blk device over a front-end", .serialized)
struct BlockDeviceTests {
    @Test("GHT-BLK-12: the configuration space and features are those of VIRTIO 1.2 §5.2.4, read through GET_CONFIG", arguments: BlockDevice.AsynchronousIO.allCases)
    func configuration(aio: BlockDevice.AsynchronousIO) throws {
        let f = try BlockFixture(queues: 2, aio: aio)
        let config = try f.frontEnd.readConfig(size: BlockConfigurationSpace.byteCount)
        func le<T: FixedWidthInteger>(_: T.Type, _ offset: Int) -> T {
            config[offset..<offset + MemoryLayout<T>.size].reversed().reduce(T.zero) { $0 << 8 | T($1) }
        }
        #expect(le(UInt64.self, 0) == UInt64(BlockFixture.sectors))
        #expect(le(UInt32.self, 8) == 1 << 20)
        #expect(le(UInt32.self, 12) == 126)
        #expect(le(UInt32.self, 20) == 512)
        #expect(le(UInt16.self, 34) == 2)
        #expect(le(UInt32.self, 40) == 16)
        #expect(config[56] == 1)
        #expect(f.frontEnd.features.isSuperset(of: [.blockDiscard, .blockWriteZeroes, .blockFlush, .blockMultiQueue, .blockSize]))
        #expect(!f.frontEnd.features.contains(.blockReadOnly))
    }

    @Test("GHT-BLK-01, GHT-BLK-07: IN and OUT with the header and data split at any byte over up to 9 descriptors, in grant and guest-physical mode",
          arguments: [FrontEndConfiguration.AddressMode.grants, .guestPhysical], BlockDevice.AsynchronousIO.allCases)
    func readWrite(mode: FrontEndConfiguration.AddressMode, aio: BlockDevice.AsynchronousIO) throws {
        let f = try BlockFixture(mode: mode, aio: aio)
        for parts in 1...9 {
            let sector = UInt64(parts * 16)
            let before = try f.read(sector: sector, bytes: 1024, parts: parts)
            #expect(before.status == ok)
            #expect(before.data == f.image(at: Int(sector) * 512, count: 1024))
            let data = BlockFixture.pattern(count: 4096, seed: UInt64(parts))
            #expect(try f.write(sector: sector, data, parts: parts) == ok)
            #expect(f.image(at: Int(sector) * 512, count: 4096) == data, "the host file holds what the guest wrote")
            let after = try f.read(sector: sector, bytes: 4096, parts: parts)
            #expect(after.status == ok && after.data == data)
        }
        #expect(f.device.statistics.writes == 9)
        #expect(f.device.statistics.bytesWritten == 9 * 4096)
    }

    @Test("GHT-BLK-04: a range past the capacity, or one whose sector arithmetic overflows, is IOERR and touches nothing outside (or inside) the file", arguments: BlockDevice.AsynchronousIO.allCases)
    func outOfRange(aio: BlockDevice.AsynchronousIO) throws {
        let f = try BlockFixture(aio: aio)
        let size = f.imageSize
        let tail = f.image(at: size - 4096, count: 4096)
        let last = UInt64(BlockFixture.sectors - 1)
        #expect(try f.write(sector: last, [UInt8](repeating: 0xEE, count: 1024)) == ioError)
        #expect(try f.write(sector: UInt64(BlockFixture.sectors), [UInt8](repeating: 0xEE, count: 512)) == ioError)
        #expect(try f.write(sector: .max, [UInt8](repeating: 0xEE, count: 512)) == ioError)
        #expect(try f.write(sector: .max / 512 + 1, [UInt8](repeating: 0xEE, count: 512)) == ioError)
        #expect(try f.read(sector: last, bytes: 1024).status == ioError)
        #expect(try f.read(sector: .max, bytes: 512).status == ioError)
        #expect(f.imageSize == size, "the file did not grow")
        #expect(f.image(at: size - 4096, count: 4096) == tail)
        // The last sector itself is in range.
        #expect(try f.write(sector: last, [UInt8](repeating: 0xEE, count: 512)) == ok)
        #expect(f.image(at: size - 512, count: 512) == [UInt8](repeating: 0xEE, count: 512))
        #expect(f.device.statistics.ioErrors == 6)
    }

    @Test("GHT-BLK-05: data that is not whole 512-byte sectors is IOERR and writes nothing", arguments: BlockDevice.AsynchronousIO.allCases)
    func partialSectors(aio: BlockDevice.AsynchronousIO) throws {
        let f = try BlockFixture(aio: aio)
        let before = f.image(at: 0, count: 1024)
        #expect(try f.write(sector: 0, [UInt8](repeating: 1, count: 700)) == ioError)
        #expect(try f.read(sector: 0, bytes: 100).status == ioError)
        #expect(f.image(at: 0, count: 1024) == before)
    }

    @Test("GHT-BLK-02, GHT-BLK-03: a 1-byte request, a 15-byte header and a request with no writable byte get a defined answer; the queue keeps working", arguments: BlockDevice.AsynchronousIO.allCases)
    func malformedRequests(aio: BlockDevice.AsynchronousIO) throws {
        let f = try BlockFixture(aio: aio)
        #expect(try f.raw([1], replyCapacity: 1) == [ioError])
        #expect(try f.raw(Array(BlockRequestHeader(type: .write, sector: 0).bytes.prefix(15)), replyCapacity: 1, parts: 4) == [ioError])
        #expect(try f.raw([], replyCapacity: 1) == [ioError], "no readable bytes at all")
        let before = f.image(at: 0, count: 512)
        #expect(try f.request(BlockRequestHeader(type: .write, sector: 0), payload: [UInt8](repeating: 9, count: 512), replyCapacity: 0) == [])
        #expect(f.device.statistics.unanswerable == 1)
        #expect(f.image(at: 0, count: 512) == before, "a request that cannot report its status is not carried out")
        #expect(try f.read(sector: 0, bytes: 512).data == before)
    }

    @Test("GHT-BLK-07: the status is the last writable byte; writable room an OUT does not use reads as zeros and counts in the used length", arguments: BlockDevice.AsynchronousIO.allCases)
    func statusPosition(aio: BlockDevice.AsynchronousIO) throws {
        let f = try BlockFixture(aio: aio)
        let reply = try f.request(BlockRequestHeader(type: .write, sector: 4), payload: [UInt8](repeating: 3, count: 512), replyCapacity: 10)
        #expect(reply == [UInt8](repeating: 0, count: 9) + [ok])
    }

    @Test("GHT-BLK-08: unknown types and types of features not offered are UNSUPP", arguments: BlockDevice.AsynchronousIO.allCases)
    func unsupportedTypes(aio: BlockDevice.AsynchronousIO) throws {
        let f = try BlockFixture(aio: aio)
        for type in [BlockRequestType(rawValue: 99), .getLifetime, .secureErase, BlockRequestType(rawValue: 2)] {
            #expect(try f.request(BlockRequestHeader(type: type, sector: 0), replyCapacity: 1) == [unsupported])
        }
        #expect(f.device.statistics.unsupported == 4)
    }

    @Test("GHT-BLK-10, GHT-BLK-11: GET_ID answers 20 bytes of the serial; FLUSH succeeds", arguments: BlockDevice.AsynchronousIO.allCases)
    func identifyAndFlush(aio: BlockDevice.AsynchronousIO) throws {
        let f = try BlockFixture(aio: aio)
        let id = try f.request(BlockRequestHeader(type: .getID, sector: 0), replyCapacity: 21)
        #expect(id == Array("vg-test-serial-01234".utf8) + [ok])
        #expect(try f.request(BlockRequestHeader(type: .flush, sector: 0)) == [ok])
        #expect(f.device.statistics.flushes == 1)
    }

    @Test("GHT-BLK-09: DISCARD and WRITE_ZEROES zero their ranges; unmap on DISCARD, unknown flags and too many segments are UNSUPP; a range past the end is IOERR and nothing is done", arguments: BlockDevice.AsynchronousIO.allCases)
    func rangeCommands(aio: BlockDevice.AsynchronousIO) throws {
        let f = try BlockFixture(aio: aio)
        let zeros = [UInt8](repeating: 0, count: 4096)
        let discard = BlockRangeSegment(sector: 8, sectorCount: 8)
        #expect(try f.request(BlockRequestHeader(type: .discard, sector: 0), payload: discard.bytes, parts: 3) == [ok])
        #expect(f.image(at: 8 * 512, count: 4096) == zeros)
        for flags: UInt32 in [0, BlockRangeSegment.unmapFlag] {
            let sector: UInt64 = flags == 0 ? 100 : 200
            let segments = [BlockRangeSegment(sector: sector, sectorCount: 4, flags: flags), BlockRangeSegment(sector: sector + 10, sectorCount: 4, flags: flags)]
            #expect(try f.request(BlockRequestHeader(type: .writeZeroes, sector: 0), payload: segments.flatMap(\.bytes)) == [ok])
            #expect(f.image(at: Int(sector) * 512, count: 2048) == [UInt8](repeating: 0, count: 2048))
            #expect(f.image(at: Int(sector + 10) * 512, count: 2048) == [UInt8](repeating: 0, count: 2048))
        }
        let keep = f.image(at: 300 * 512, count: 512)
        let unmapDiscard = BlockRangeSegment(sector: 300, sectorCount: 1, flags: BlockRangeSegment.unmapFlag)
        #expect(try f.request(BlockRequestHeader(type: .discard, sector: 0), payload: unmapDiscard.bytes) == [unsupported])
        #expect(try f.request(BlockRequestHeader(type: .writeZeroes, sector: 0), payload: BlockRangeSegment(sector: 300, sectorCount: 1, flags: 4).bytes) == [unsupported])
        let seventeen = (0..<17).flatMap { _ in BlockRangeSegment(sector: 300, sectorCount: 1).bytes }
        #expect(try f.request(BlockRequestHeader(type: .discard, sector: 0), payload: seventeen) == [unsupported])
        #expect(try f.request(BlockRequestHeader(type: .discard, sector: 0), payload: Array(discard.bytes.prefix(10))) == [unsupported])
        // One good range and one past the end: the list is refused as a whole.
        let mixed = BlockRangeSegment(sector: 300, sectorCount: 1).bytes + BlockRangeSegment(sector: 2047, sectorCount: 2).bytes
        #expect(try f.request(BlockRequestHeader(type: .writeZeroes, sector: 0), payload: mixed) == [ioError])
        #expect(f.image(at: 300 * 512, count: 512) == keep)
        #expect(f.imageSize == BlockFixture.sectors * 512)
    }

    @Test("GHT-BLK-06: a read-only device offers RO, fails every write with IOERR and leaves the file untouched", arguments: BlockDevice.AsynchronousIO.allCases)
    func readOnly(aio: BlockDevice.AsynchronousIO) throws {
        let f = try BlockFixture(readOnly: true, aio: aio)
        #expect(f.frontEnd.features.contains(.blockReadOnly))
        #expect(!f.frontEnd.features.contains(.blockDiscard))
        let before = f.image(at: 0, count: 4096)
        #expect(try f.write(sector: 0, [UInt8](repeating: 5, count: 4096)) == ioError)
        #expect(try f.request(BlockRequestHeader(type: .writeZeroes, sector: 0), payload: BlockRangeSegment(sector: 0, sectorCount: 8).bytes) == [ioError])
        #expect(f.image(at: 0, count: 4096) == before)
        #expect(try f.read(sector: 0, bytes: 4096).data == before)
    }

    @Test("An image shrunk behind the device's back reads as zeros past its new end, never stale bytes or an error", arguments: BlockDevice.AsynchronousIO.allCases)
    func shrunkImage(aio: BlockDevice.AsynchronousIO) throws {
        let f = try BlockFixture(aio: aio)
        #expect(truncate(f.imagePath, off_t(BlockFixture.sectors * 512 - 1024)) == 0)
        let tail = try f.read(sector: UInt64(BlockFixture.sectors - 4), bytes: 2048, parts: 3)
        #expect(tail.status == ok)
        #expect(Array(tail.data[0..<1024]) == f.image(at: (BlockFixture.sectors - 4) * 512, count: 1024))
        #expect(Array(tail.data[1024...]) == [UInt8](repeating: 0, count: 1024))
    }

    @Test("GHT-BLK-12: num_queues request queues serve writes from several threads at once, each landing where it was sent", arguments: BlockDevice.AsynchronousIO.allCases)
    func multiQueue(aio: BlockDevice.AsynchronousIO) throws {
        let f = try BlockFixture(queues: 4, aio: aio)
        #expect(f.frontEnd.queues.count == 4)
        // Each queue writes 64 requests of 8 sectors to its own quarter, then every byte is read back.
        for round in 0..<64 {
            for q in 0..<4 {
                let sector = UInt64(q * 512 + round * 8)
                _ = try f.frontEnd.queues[q].submit(BlockRequestHeader(type: .write, sector: sector).bytes
                                                        + BlockFixture.pattern(count: 4096, seed: sector), replyCapacity: 1, parts: 2)
                try f.frontEnd.queues[q].publish()
            }
            for q in 0..<4 {
                let done = try f.frontEnd.queues[q].waitForCompletions()
                #expect(done.count == 1 && done[0].reply == [ok])
            }
        }
        for q in 0..<4 {
            for round in stride(from: 0, to: 64, by: 7) {
                let sector = UInt64(q * 512 + round * 8)
                #expect(f.image(at: Int(sector) * 512, count: 4096) == BlockFixture.pattern(count: 4096, seed: sector))
            }
        }
        #expect(f.device.statistics.writes == 256)
    }
}
