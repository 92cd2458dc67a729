#if canImport(Glibc)
import Glibc
#endif
import Testing
import VirtioSystem

/// A temporary file of `count` bytes of a known pattern, removed by `deinit`.
final class ScratchFile {
    let path = "/tmp/\(uniqueName("uring")).img"
    let file: StorageFile

    init(count: Int, direct: Bool = false) throws {
        let fd = open(path, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0o600)
        precondition(fd >= 0)
        let bytes = Self.pattern(count)
        precondition(bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) } == count)
        Glibc.close(fd)
        file = try StorageFile(path: path, direct: direct)
    }

    deinit { unlink(path) }

    static func pattern(_ count: Int, seed: UInt8 = 0) -> [UInt8] { (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 9 &+ Int(seed)) } }

    func bytes(at offset: Int, count: Int) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        defer { Glibc.close(fd) }
        var out = [UInt8](repeating: 0xAA, count: count)
        let n = out.withUnsafeMutableBytes { pread(fd, $0.baseAddress, count, off_t(offset)) }
        return Array(out.prefix(max(n, 0)))
    }

    var size: Int {
        var info = stat()
        stat(path, &info)
        return Int(info.st_size)
    }
}

/// A buffer that outlives the ring operations that use it.
final class TestBuffer {
    let bytes: UnsafeMutableRawBufferPointer
    init(_ count: Int, alignment: Int = 4096) {
        bytes = .allocate(byteCount: count, alignment: alignment)
        bytes.initializeMemory(as: UInt8.self, repeating: 0xEE)
    }
    deinit { bytes.deallocate() }
    var array: [UInt8] { Array(bytes) }
    func part(_ offset: Int, _ count: Int) -> UnsafeMutableRawBufferPointer { UnsafeMutableRawBufferPointer(rebasing: bytes[offset..<offset + count]) }
}

/// Reaps until `count` completions arrived (each waited for at most 5 s).
func reapAll(_ ring: IOUring, _ count: Int) throws -> [IOUringCompletion] {
    var got: [IOUringCompletion] = []
    while got.count < count {
        guard try ring.wait(minimum: 1, timeoutMilliseconds: 5000) else { break }
        ring.reap { got.append($0) }
    }
    return got
}

extension SystemTests {
    @Suite("io_uring")
    struct IOUringTests {
        @Test("GHT-OS-25: setup rounds the entries up to a power of 2, clamps them to the kernel's maximum and makes the completion ring twice as large; a refused setup is a SystemError naming io_uring_setup; close closes the ring and its eventfd")
        func setup() throws {
            let ring = try IOUring(entries: 5)
            #expect(ring.submissionCapacity == 8)
            #expect(ring.completionCapacity == 16)
            #expect(ring.inFlight == 0 && ring.readyCompletions == 0)
            let big = try IOUring(entries: 1 << 20)
            #expect(big.submissionCapacity == 32768, "IORING_MAX_ENTRIES, with IORING_SETUP_CLAMP")
            #expect(openDescriptorTargets()[ring.fd.rawValue] == "anon_inode:[io_uring]")
            #expect(throws: SystemError(errno: EINVAL, operation: "io_uring_setup")) { try IOUring(entries: 0) }
            big.close()
            #expect(!big.fd.isOpen && !big.completionDoorbell.fd.isOpen, "ring and eventfd closed")
        }

        @Test("GHT-OS-26: readv and writev prepared in a batch reach the kernel in one submit, move the bytes at their offsets and complete with their user data and byte counts")
        func readAndWrite() throws {
            let scratch = try ScratchFile(count: 1 << 16)
            let ring = try #require(IOUring.make(entries: 16, turnedOff: false))
            let source = TestBuffer(8192)
            source.bytes.copyBytes(from: ScratchFile.pattern(8192, seed: 99))
            try scratch.file.prepareWrite(on: ring, at: 4096, from: [UnsafeRawBufferPointer(source.part(0, 100)), UnsafeRawBufferPointer(source.part(100, 8092))], userData: 7)
            #expect(try ring.submit() == 1)
            #expect(try reapAll(ring, 1) == [IOUringCompletion(userData: 7, result: 8192)])
            #expect(scratch.bytes(at: 4096, count: 8192) == source.array)
            let targets = (0..<4).map { _ in TestBuffer(4096) }
            for (k, t) in targets.enumerated() {
                try scratch.file.prepareRead(on: ring, at: UInt64(k * 4096), into: [t.part(0, 1000), t.part(1000, 3096)], userData: 100 + UInt64(k))
            }
            #expect(ring.inFlight == 4 && ring.pendingSubmissions == 4)
            #expect(try ring.submit() == 4, "one io_uring_enter takes the batch")
            let done = try reapAll(ring, 4)
            #expect(Set(done.map(\.userData)) == [100, 101, 102, 103])
            #expect(done.allSatisfy { $0.result == 4096 })
            for (k, t) in targets.enumerated() { #expect(t.array == scratch.bytes(at: k * 4096, count: 4096)) }
            #expect(ring.inFlight == 0)
        }

        @Test("GHT-OS-27: completions come in the order the operations finished, not the order they were submitted; the registered eventfd rings when they are posted and they are reaped from the shared ring")
        func outOfOrder() throws {
            let ring = try IOUring(entries: 4)
            let pipes = try (0..<3).map { _ in try Pipe() }
            let buffers = (0..<3).map { _ in TestBuffer(16) }
            for k in 0..<3 { try ring.prepareReadv(pipes[k].readEnd, at: .max, buffers: [buffers[k].part(0, 16)], userData: UInt64(k)) }
            try ring.submit()
            #expect(try !ring.completionDoorbell.wait(timeoutMilliseconds: 50), "nothing finished yet")
            #expect(ring.reap { _ in } == 0)
            var order: [UInt64] = []
            for k in [2, 0, 1] {
                _ = [UInt8(k)].withUnsafeBytes { Glibc.write(pipes[k].writeEnd.rawValue, $0.baseAddress, 1) }
                #expect(try ring.completionDoorbell.wait(timeoutMilliseconds: 5000))
                _ = try ring.completionDoorbell.drain()
                #expect(try ring.wait(minimum: 1, timeoutMilliseconds: 5000))
                ring.reap { order.append($0.userData); #expect($0.result == 1) }
            }
            #expect(order == [2, 0, 1])
        }

        @Test("GHT-OS-28: a failed operation completes with its errno, reported as a SystemError naming the operation; the others of its batch are not affected")
        func failures() throws {
            let scratch = try ScratchFile(count: 8192)
            let ring = try IOUring(entries: 4)
            let readOnly = try StorageFile(path: scratch.path, writable: false)
            let buffer = TestBuffer(4096)
            try readOnly.prepareWrite(on: ring, at: 0, from: [UnsafeRawBufferPointer(buffer.bytes)], userData: 1)
            try scratch.file.prepareRead(on: ring, at: 0, into: [buffer.bytes], userData: 2)
            try ring.submit()
            let done = try reapAll(ring, 2).sorted { $0.userData < $1.userData }
            #expect(done.count == 2)
            #expect(throws: SystemError(errno: EBADF, operation: "writev")) { try done[0].value("writev") }
            #expect(try done[1].value("readv") == 4096)
            #expect(scratch.bytes(at: 0, count: 4096) == ScratchFile.pattern(4096))
        }

        @Test("GHT-OS-29: no more than the completion ring's size is in flight and no more than the submission ring holds is prepared: one more is refused as full, without touching the ring; a vector beyond IOV_MAX is refused whatever is free")
        func bounds() throws {
            let ring = try IOUring(entries: 2)
            #expect(ring.completionCapacity == 4)
            try ring.prepareNoOperation(userData: 1)
            try ring.prepareNoOperation(userData: 2)
            #expect(throws: IOUringPrepareFailure.full) { try ring.prepareNoOperation(userData: 3) }
            try ring.submit()
            try ring.prepareNoOperation(userData: 3)
            try ring.prepareNoOperation(userData: 4)
            #expect(throws: IOUringPrepareFailure.full, "four in flight: the completion ring's size") { try ring.prepareNoOperation(userData: 5) }
            try ring.submit()
            #expect(ring.inFlight == 4)
            #expect(try reapAll(ring, 4).map(\.userData).sorted() == [1, 2, 3, 4])
            let scratch = try ScratchFile(count: 4096)
            let buffer = TestBuffer(2048)
            let many = (0..<1025).map { buffer.part($0, 1) }
            #expect(throws: IOUringPrepareFailure.tooManyBuffers) { try scratch.file.prepareRead(on: ring, at: 0, into: many, userData: 9) }
            #expect(ring.inFlight == 0 && ring.pendingSubmissions == 0)
        }

        @Test("GHT-OS-30: fdatasync and fallocate through the ring: a punched hole and a zeroed range read as zeros, an allocated range keeps its bytes, and the file's size stays")
        func rangeOperations() throws {
            let scratch = try ScratchFile(count: 1 << 16)
            let ring = try IOUring(entries: 8)
            try scratch.file.prepareAllocation(on: ring, .punchHole, at: 4096, length: 4096, userData: 1)
            try scratch.file.prepareAllocation(on: ring, .zeroRange, at: 12288, length: 1024, userData: 2)
            try scratch.file.prepareAllocation(on: ring, .allocate, at: 0, length: 4096, userData: 3)
            try scratch.file.prepareAllocation(on: ring, .punchHole, at: 1 << 16, length: 4096, userData: 4)
            try scratch.file.prepareSynchronize(on: ring, userData: 5)
            try ring.submit()
            let done = try reapAll(ring, 5)
            #expect(done.count == 5 && done.allSatisfy { $0.result == 0 })
            #expect(scratch.bytes(at: 4096, count: 4096) == [UInt8](repeating: 0, count: 4096))
            #expect(scratch.bytes(at: 12288, count: 1024) == [UInt8](repeating: 0, count: 1024))
            #expect(scratch.bytes(at: 0, count: 4096) == Array(ScratchFile.pattern(4096)))
            #expect(scratch.bytes(at: 13312, count: 100) == Array(ScratchFile.pattern(13412)[13312...]))
            #expect(scratch.size == 1 << 16, "KEEP_SIZE: a range past the end does not grow the file")
        }

        @Test("GHT-OS-31: io_uring can be turned off (VIRTIO_GRANT_AIO=sync), and a ring the kernel refuses is no ring: make answers nil and the caller does its I/O synchronously")
        func fallback() throws {
            #expect(IOUring.isTurnedOff(environment: "sync"))
            #expect(!IOUring.isTurnedOff(environment: nil) && !IOUring.isTurnedOff(environment: "io_uring"))
            #expect(IOUring.make(entries: 8, turnedOff: true) == nil)
            #expect(IOUring.make(entries: 0, turnedOff: false) == nil, "EINVAL from io_uring_setup")
            #expect(IOUring.make(entries: 8, turnedOff: false) != nil)
        }

        @Test("GHT-OS-32: drain submits what is prepared and reaps until nothing is in flight; it gives up at its deadline while an operation is still in the kernel; close closes the ring and its eventfd, once")
        func drain() throws {
            do {
                let ring = try IOUring(entries: 4)
                let pipe = try Pipe()
                let buffer = TestBuffer(8)
                try ring.prepareReadv(pipe.readEnd, at: .max, buffers: [buffer.bytes], userData: 1)
                try ring.prepareNoOperation(userData: 2)
                var seen: [UInt64] = []
                #expect(try !ring.drain(timeoutMilliseconds: 100) { seen.append($0.userData) })
                #expect(seen == [2] && ring.inFlight == 1)
                _ = [UInt8](repeating: 5, count: 8).withUnsafeBytes { Glibc.write(pipe.writeEnd.rawValue, $0.baseAddress, 8) }
                #expect(try ring.drain(timeoutMilliseconds: 5000) { seen.append($0.userData) })
                #expect(seen == [2, 1] && ring.inFlight == 0)
                #expect(buffer.array == [UInt8](repeating: 5, count: 8))
                ring.close()
                ring.close()
                #expect(!ring.fd.isOpen && !ring.completionDoorbell.fd.isOpen)
            }
        }

        @Test("GHT-OS-33: an entry marked drain (IOSQE_IO_DRAIN) starts only after every entry submitted before it completed")
        func drainOrdering() throws {
            let ring = try IOUring(entries: 4)
            let pipe = try Pipe()
            let buffer = TestBuffer(1)
            try ring.prepareReadv(pipe.readEnd, at: .max, buffers: [buffer.bytes], userData: 1)
            try ring.submit()
            try ring.prepareNoOperation(userData: 2, ordering: .drain)
            try ring.submit()
            #expect(try !ring.wait(minimum: 1, timeoutMilliseconds: 100), "the drained no-op waits for the read")
            _ = [UInt8(1)].withUnsafeBytes { Glibc.write(pipe.writeEnd.rawValue, $0.baseAddress, 1) }
            #expect(try reapAll(ring, 2).map(\.userData) == [1, 2])
        }

        @Test("GHT-OS-34: a StorageFile opened with O_DIRECT moves 512-aligned buffers through the ring past the page cache and refuses unaligned ones with EINVAL")
        func direct() throws {
            let scratch = try ScratchFile(count: 1 << 16, direct: true)
            #expect(scratch.file.isDirect)
            let ring = try IOUring(entries: 4)
            let aligned = TestBuffer(4096, alignment: 4096)
            let odd = TestBuffer(4096 + 1, alignment: 4096)
            try scratch.file.prepareRead(on: ring, at: 8192, into: [aligned.bytes], userData: 1)
            try scratch.file.prepareRead(on: ring, at: 0, into: [odd.part(1, 4096)], userData: 2)
            try ring.submit()
            let done = try reapAll(ring, 2).sorted { $0.userData < $1.userData }
            #expect(done.map(\.result) == [4096, -EINVAL])
            #expect(aligned.array == Array(ScratchFile.pattern(12288)[8192...]))
        }
    }
}
