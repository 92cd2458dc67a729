import Testing
import VirtioCore
import VirtioDevices
import VirtioTransport
import VirtioSystem

#if canImport(Glibc)
import Glibc
#endif

extension BlockFixture {
    /// Submits every request of `requests` (bytes, reply capacity, parts), publishes them at
    /// once, and returns the completions in the order the used ring gave them: each request's
    /// place in `requests` and its reply.
    func batch(_ requests: [(bytes: [UInt8], reply: Int, parts: Int)], queue: Int = 0) throws -> [(index: Int, reply: [UInt8])] {
        let q = frontEnd.queues[queue]
        var index: [UInt64: Int] = [:]
        for (k, r) in requests.enumerated() { index[try q.submit(r.bytes, replyCapacity: r.reply, parts: r.parts)] = k }
        try q.publish()
        var done: [(index: Int, reply: [UInt8])] = []
        while done.count < requests.count { done += try q.waitForCompletions().map { (index[$0.token] ?? -1, $0.reply) } }
        return done
    }
}

/// A device that forwards everything but the completion event and its servicing: what a
/// wrapper written before asynchronous completion looks like.
final class PlainWrapper: VirtioDevice {
    let inner: BlockDevice
    init(_ inner: BlockDevice) { self.inner = inner }
    var deviceID: UInt32 { inner.deviceID }
    var deviceFeatures: VirtioFeatures { inner.deviceFeatures }
    var queueCount: Int { inner.queueCount }
    var maxQueueSize: Int { inner.maxQueueSize }
    func readConfig() -> [UInt8] { inner.readConfig() }
    func process(queue: Int, batch: inout RequestBatch) { inner.process(queue: queue, batch: &batch) }
    func reset() { inner.reset() }
    func queueStarted(_ queue: Int, doorbell: QueueDoorbell) { inner.queueStarted(queue, doorbell: doorbell) }
    func queueStopped(_ queue: Int) { inner.queueStopped(queue) }
}

extension BlockDeviceTests {
    @Suite("virtio-blk on io_uring")
    struct Asynchronous {
        static func header(_ type: BlockRequestType, _ sector: UInt64) -> [UInt8] { BlockRequestHeader(type: type, sector: sector).bytes }

        @Test("GHT-BLK-13: each queue gets an io_uring when it starts and its I/O goes there; with --aio sync (or no ring) every request is served inside process, with no ring open")
        func pathChoice() throws {
            for aio in BlockDevice.AsynchronousIO.allCases {
                let f = try BlockFixture(queues: 2, aio: aio)
                #expect(try f.write(sector: 3, BlockFixture.pattern(count: 4096, seed: 1)) == ok)
                #expect(try f.read(sector: 3, bytes: 4096).data == BlockFixture.pattern(count: 4096, seed: 1))
                #expect(f.device.ringsOpen == (aio == .ioUring ? 2 : 0))
                #expect(f.device.statistics.submitted == (aio == .ioUring ? 2 : 0))
            }
        }

        @Test("GHT-BLK-14: the requests of one batch are all in the kernel at once, submitted together and completed by the worker as they finish, whether it sleeps or polls",
              arguments: [QueueExecution.sleeping, .polling])
        func manyInFlight(execution: QueueExecution) throws {
            let f = try BlockFixture(execution: execution)
            let requests = (0..<32).map { k in (bytes: Self.header(.read, UInt64(k * 16)), reply: 4097, parts: 1) }
            let done = try f.batch(requests)
            #expect(done.count == 32)
            for c in done {
                let k = c.index
                #expect(c.reply.last == ok && Array(c.reply.dropLast()) == f.image(at: k * 16 * 512, count: 4096))
            }
            #expect(f.device.statistics.submitted == 32)
            #expect(f.device.statistics.peakInFlight == 32, "one batch, one submit: all 32 in the kernel together")
            #expect(f.device.requestsInFlight(queue: 0) == 0)
        }

        @Test("GHT-BLK-15: requests complete in the order their I/O finished, not the order they were made available: a read after a flush held behind a write completes before the flush")
        func outOfOrder() throws {
            let f = try BlockFixture()
            let data = BlockFixture.pattern(count: 32768, seed: 3)
            let done = try f.batch([(Self.header(.write, 0) + data, 1, 2), (Self.header(.flush, 0), 1, 1), (Self.header(.read, 512), 4097, 1)])
            let order = done.map(\.index)
            #expect(order.firstIndex(of: 2)! < order.firstIndex(of: 1)!, "used order \(order): the read passed the flush")
            #expect(done.allSatisfy { $0.reply.last == ok })
        }

        @Test("GHT-BLK-16: on the io_uring path every check still happens before any I/O: refused requests never reach the ring and leave the file as it was",
              arguments: BlockDevice.AsynchronousIO.allCases)
        func hostileRefusedFirst(aio: BlockDevice.AsynchronousIO) throws {
            let f = try BlockFixture(aio: aio)
            let before = f.image(at: 0, count: BlockFixture.sectors * 512)
            let last = UInt64(BlockFixture.sectors - 1)
            let bad: [(bytes: [UInt8], reply: Int, parts: Int)] = [
                ([1], 1, 1),
                (Array(Self.header(.write, 0).prefix(15)), 1, 3),
                (Self.header(.write, last) + [UInt8](repeating: 0xEE, count: 1024), 1, 2),
                (Self.header(.write, .max) + [UInt8](repeating: 0xEE, count: 512), 1, 1),
                (Self.header(.read, .max / 512 + 1), 513, 1),
                (Self.header(.write, 0) + [UInt8](repeating: 0xEE, count: 700), 1, 1),
                (Self.header(.read, 0), 101, 1),
                (Self.header(.discard, 0) + BlockRangeSegment(sector: 0, sectorCount: 1, flags: BlockRangeSegment.unmapFlag).bytes, 1, 1),
                (Self.header(.writeZeroes, 0) + BlockRangeSegment(sector: 0, sectorCount: 1).bytes + BlockRangeSegment(sector: last, sectorCount: 2).bytes, 1, 1),
                (Self.header(BlockRequestType(rawValue: 99), 0), 1, 1),
            ]
            let done = try f.batch(bad)
            #expect(done.count == bad.count && done.allSatisfy { $0.reply.last != ok })
            #expect(f.device.statistics.submitted == 0, "nothing reached the ring")
            #expect(f.image(at: 0, count: BlockFixture.sectors * 512) == before)
            #expect(try f.read(sector: 0, bytes: 512).status == ok)
            #expect(f.device.statistics.submitted == (aio == .ioUring ? 1 : 0))
        }

        /// A scripted mix of every request type, good and bad, as one batch after another.
        static func script() -> [[(bytes: [UInt8], reply: Int, parts: Int)]] {
            let zeroes = BlockRangeSegment(sector: 40, sectorCount: 8).bytes + BlockRangeSegment(sector: 60, sectorCount: 4, flags: BlockRangeSegment.unmapFlag).bytes
            return [
                [(header(.write, 8) + BlockFixture.pattern(count: 8192, seed: 11), 1, 3), (header(.read, 100), 2049, 2), (header(.getID, 0), 21, 1)],
                [(header(.flush, 0), 1, 1), (header(.discard, 0) + BlockRangeSegment(sector: 200, sectorCount: 16).bytes, 1, 2),
                 (header(.writeZeroes, 0) + zeroes, 1, 1), (header(.read, 8), 8193, 4)],
                [(header(.write, 2040) + BlockFixture.pattern(count: 8192, seed: 12), 1, 1), (header(.read, 0), 100, 1), ([7, 7], 1, 1),
                 (header(.write, 300) + BlockFixture.pattern(count: 512, seed: 13), 5, 2), (header(.flush, 0), 1, 1)],
                // A read of what a request still in flight writes has no defined order: a batch later.
                [(header(.read, 300), 513, 1), (header(.read, 40), 8 * 512 + 1, 3), (header(.read, 2047), 513, 2)],
            ]
        }

        @Test("GHT-BLK-17: the same requests give the same replies, the same statistics and the same image on the io_uring path and the synchronous one")
        func equivalence() throws {
            var results: [[[UInt8]]] = []
            var images: [[UInt8]] = []
            var counts: [BlockDevice.Statistics] = []
            for aio in BlockDevice.AsynchronousIO.allCases {
                let f = try BlockFixture(aio: aio)
                var replies: [[UInt8]] = []
                for batch in Self.script() {
                    replies += try f.batch(batch).sorted { $0.index < $1.index }.map(\.reply)
                }
                results.append(replies)
                images.append(f.image(at: 0, count: BlockFixture.sectors * 512))
                var s = f.device.statistics
                #expect(aio == .synchronous || s.submitted == 11, "\(aio): \(s.submitted) requests went to the ring")
                (s.submitted, s.peakInFlight, s.flushesHeld, s.synchronousFallbacks) = (0, 0, 0, 0)
                counts.append(s)
            }
            #expect(results[0].count == results[1].count)
            for (k, (a, b)) in zip(results[0], results[1]).enumerated() { #expect(a == b, "reply \(k)") }
            #expect(images[0] == images[1])
            #expect(counts[0] == counts[1])
        }

        @Test("GHT-BLK-18: a FLUSH made available after writes still in the kernel is held in the device until they completed, and completes after them")
        func flushAfterWrites() throws {
            let f = try BlockFixture()
            let writes = (0..<8).map { k in (bytes: Self.header(.write, UInt64(k * 128)) + BlockFixture.pattern(count: 32768, seed: UInt64(k)), reply: 1, parts: 2) }
            let done = try f.batch(writes + [(Self.header(.flush, 0), 1, 1)])
            #expect(done.last?.index == 8, "used order \(done.map(\.index)): the flush comes after every write")
            #expect(done.allSatisfy { $0.reply == [ok] })
            #expect(f.device.statistics.flushesHeld == 1)
            #expect(f.device.statistics.flushes == 1)
            // With no write in flight, a flush goes to the kernel at once.
            #expect(try f.request(BlockRequestHeader(type: .flush, sector: 0)) == [ok])
            #expect(f.device.statistics.flushesHeld == 1)
        }

        @Test("GHT-BLK-19: DISCARD and WRITE_ZEROES go through the ring as one fallocate per range and complete when every range has; the ranges read as zeros and the image keeps its size")
        func rangesAsynchronous() throws {
            let f = try BlockFixture()
            let list = BlockRangeSegment(sector: 10, sectorCount: 4).bytes + BlockRangeSegment(sector: 30, sectorCount: 2).bytes
                + BlockRangeSegment(sector: 50, sectorCount: 6, flags: BlockRangeSegment.unmapFlag).bytes
            let done = try f.batch([(Self.header(.writeZeroes, 0) + list, 1, 2), (Self.header(.discard, 0) + BlockRangeSegment(sector: 2040, sectorCount: 8).bytes, 1, 1)])
            #expect(done.allSatisfy { $0.reply == [ok] })
            #expect(f.device.statistics.submitted == 2)
            for (sector, count) in [(10, 4), (30, 2), (50, 6), (2040, 8)] {
                #expect(f.image(at: sector * 512, count: count * 512) == [UInt8](repeating: 0, count: count * 512))
            }
            #expect(f.image(at: 14 * 512, count: 512) == Array(BlockFixture.pattern(count: 15 * 512, seed: 7)[(14 * 512)...]))
            #expect(f.imageSize == BlockFixture.sectors * 512)
        }

        @Test("GHT-BLK-20: a read the kernel fails is IOERR with zeros where the data would be, never the bytes the buffers held before", arguments: BlockDevice.AsynchronousIO.allCases)
        func failedReadIsZeros(aio: BlockDevice.AsynchronousIO) throws {
            // A directory opens read-only and has a size, but every read of it fails (EISDIR).
            let directory = "/tmp/vg-blk-dir-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
            #expect(mkdir(directory, 0o700) == 0)
            defer { rmdir(directory) }
            let f = try BlockFixture(readOnly: true, aio: aio, image: directory)
            // GET_ID fills the reply buffer the read below reuses.
            #expect(try f.request(BlockRequestHeader(type: .getID, sector: 0), replyCapacity: 513).prefix(20) == ArraySlice("vg-test-serial-01234".utf8))
            let failed = try f.read(sector: 0, bytes: 512)
            #expect(failed.status == ioError)
            #expect(failed.data == [UInt8](repeating: 0, count: 512))
            #expect(f.device.statistics.submitted == (aio == .ioUring ? 1 : 0))
        }

        @Test("GHT-BLK-21: a queue keeps at most its ring's completion room in the kernel; more requests at once wait for room, and all complete")
        func ringBound() throws {
            let f = try BlockFixture(configure: { $0.ringEntries = 2 })
            let requests = (0..<16).map { k in (bytes: Self.header(.read, UInt64(k * 8)), reply: 4097, parts: 1) }
            let done = try f.batch(requests)
            #expect(done.count == 16)
            for c in done { #expect(c.reply.last == ok && Array(c.reply.dropLast()) == f.image(at: c.index * 8 * 512, count: 4096)) }
            #expect(f.device.statistics.peakInFlight == 4, "a ring of 2 entries completes 4 at most")
            #expect(f.device.statistics.submitted == 16)
        }

        @Test("GHT-BLK-22: a session that ends with I/O in the kernel waits for it: every request completes, the rings close, nothing stays in flight")
        func teardownInFlight() throws {
            let f = try BlockFixture(queues: 2)
            for q in 0..<2 {
                for k in 0..<48 {
                    try f.frontEnd.queues[q].submit(Self.header(.write, UInt64(q * 1024 + k * 16)) + BlockFixture.pattern(count: 8192, seed: UInt64(k)), replyCapacity: 1, parts: 3)
                }
                try f.frontEnd.queues[q].publish()
            }
            f.frontEnd.close()
            f.backEnd.stop()
            #expect(f.device.requestsInFlight(queue: 0) == 0 && f.device.requestsInFlight(queue: 1) == 0)
            let s = f.device.statistics
            #expect(s.submitted > 0 && s.writes == s.submitted, "every write that reached the ring completed")
            #expect(f.device.ringsOpen == 0, "the rings closed with their queues")
        }


        @Test("GHT-BLK-23: behind a wrapper that does not forward the completion event, the device keeps nothing: every request is served inside process")
        func wrapperStaysSynchronous() throws {
            let f = try BlockFixture(wrap: { PlainWrapper($0) })
            #expect(try f.write(sector: 5, BlockFixture.pattern(count: 1024, seed: 5)) == ok)
            #expect(try f.read(sector: 5, bytes: 1024).data == BlockFixture.pattern(count: 1024, seed: 5))
            #expect(try f.request(BlockRequestHeader(type: .flush, sector: 0)) == [ok])
            #expect(f.device.statistics.submitted == 0)
        }

        @Test("GHT-BLK-24: with O_DIRECT, aligned guest buffers go to the kernel as they are and buffers split at any byte go through an aligned bounce buffer, on both paths",
              arguments: BlockDevice.AsynchronousIO.allCases)
        func direct(aio: BlockDevice.AsynchronousIO) throws {
            let f = try BlockFixture(aio: aio, direct: true)
            #expect(f.device.file.isDirect)
            for parts in [1, 3, 7] {
                let sector = UInt64(parts * 64)
                let data = BlockFixture.pattern(count: 8192, seed: UInt64(parts))
                #expect(try f.write(sector: sector, data, parts: parts) == ok)
                #expect(f.image(at: Int(sector) * 512, count: 8192) == data)
                let back = try f.read(sector: sector, bytes: 8192, parts: parts)
                #expect(back.status == ok && back.data == data)
            }
            #expect(try f.request(BlockRequestHeader(type: .writeZeroes, sector: 0), payload: BlockRangeSegment(sector: 64, sectorCount: 2).bytes) == [ok])
            #expect(f.image(at: 64 * 512, count: 1024) == [UInt8](repeating: 0, count: 1024))
        }
    }
}
