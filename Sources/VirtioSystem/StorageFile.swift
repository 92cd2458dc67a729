#if canImport(Glibc)
import Glibc
#endif
import CVirtioShim
import VirtioCore

/// A regular file (or block device node) a device stores data in: a block device's image.
///
/// Payload moves between the file and a request's resolved fragments with `pread`/`pwrite`
/// straight into and out of guest memory, no intermediate copy. Every call is positional, so
/// the queues of a multi-queue device may use one file from their own threads at once.
public final class StorageFile: Sendable {
    public let path: String
    public let isWritable: Bool
    /// The size in bytes when the file was opened (a device's capacity is fixed at creation).
    public let size: UInt64
    /// Opened with `O_DIRECT`: transfers bypass the page cache, and every buffer address,
    /// length and file offset must be a multiple of ``directAlignment`` (the kernel answers
    /// `EINVAL` otherwise).
    public let isDirect: Bool
    let fd: FileDescriptor

    /// The alignment `O_DIRECT` transfers keep to here: 512 bytes (a virtio-blk sector; the
    /// logical block size of the disks and file systems this serves).
    public static let directAlignment = 512

    /// Opens `path`, for reading and writing unless `writable` is false, through the page cache
    /// unless `direct` (`O_DIRECT`; `EINVAL` from a file system that does not support it).
    public init(path: String, writable: Bool = true, direct: Bool = false) throws(SystemError) {
        self.path = path
        isWritable = writable
        isDirect = direct
        let flags = (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC | (direct ? CVirtioShim_O_DIRECT() : 0)
        fd = FileDescriptor(adopting: try valueOrErrno("open") { Glibc.open(path, flags) })
        let raw = fd.rawValue
        var info = stat()
        try nothingOrErrno("fstat") { fstat(raw, &info) }
        if info.st_mode & S_IFMT == S_IFBLK {
            // A block device node reports size 0 in st_size; its end is where lseek goes.
            size = UInt64(try valueOrErrno("lseek") { lseek(raw, 0, SEEK_END) })
        } else {
            size = UInt64(info.st_size)
        }
    }

    /// Reads `count` bytes at `offset` into the request's writable fragments, with one
    /// `preadv` over all of them where it can. Bytes past the end of the file read as zeros (a
    /// file shrunk behind the device's back, or a sparse tail).
    ///
    /// - Returns: the bytes produced (`count`, unless the request has less room).
    @discardableResult
    public func read(at offset: UInt64, count: Int, into writer: inout FragmentWriter) throws(SystemError) -> Int {
        let raw = fd.rawValue, direct = isDirect
        return try Self.repeatVectored(count) { done, failure in
            writer.produceVectored(upTo: count - done) { parts in
                let got = Self.bouncedIfUnaligned(direct, parts, copyIn: false) { parts in
                    Self.vectored("preadv", parts, failure: &failure) { preadv(raw, $0, $1, Self.position(offset, done)) }
                }
                guard got == 0, failure == nil else { return got }
                // End of file: the rest of what was offered reads as zeros.
                for part in parts { part.initializeMemory(as: UInt8.self, repeating: 0) }
                return parts.reduce(0) { $0 + $1.count }
            }
        }
    }

    /// Writes `count` bytes from the request's readable fragments at `offset`, with one
    /// `pwritev` over all of them where it can.
    ///
    /// - Returns: the bytes consumed (`count`, unless the request has fewer).
    @discardableResult
    public func write(at offset: UInt64, count: Int, from reader: inout FragmentReader) throws(SystemError) -> Int {
        let raw = fd.rawValue, direct = isDirect
        return try Self.repeatVectored(count) { done, failure in
            reader.consumeVectored(upTo: count - done) { parts in
                let mutable = parts.map { UnsafeMutableRawBufferPointer(mutating: $0) }
                return Self.bouncedIfUnaligned(direct, mutable, copyIn: true) { parts in
                    Self.vectored("pwritev", parts, failure: &failure) { pwritev(raw, $0, $1, Self.position(offset, done)) }
                }
            }
        }
    }

    /// Repeats `step` (given the bytes moved so far) until `count` bytes moved, a step moved
    /// none, or one failed: short transfers are resumed, errors thrown.
    private static func repeatVectored(_ count: Int, _ step: (Int, inout SystemError?) -> Int) throws(SystemError) -> Int {
        var done = 0
        while done < count {
            var failure: SystemError?
            let n = step(done, &failure)
            if let failure { throw failure }
            if n == 0 { break }
            done += n
        }
        return done
    }

    /// One vectored call over `fragments` through the syscall seam; 0 and `failure` set on error.
    private static func vectored(_ operation: StaticString, _ parts: [UnsafeMutableRawBufferPointer], failure: inout SystemError?,
                                 _ call: (UnsafePointer<iovec>, Int32) -> Int) -> Int {
        guard !parts.isEmpty else { return 0 }
        let vectors = parts.map { iovec(iov_base: $0.baseAddress, iov_len: $0.count) }
        do throws(SystemError) {
            return try vectors.withUnsafeBufferPointer { v in
                Result { () throws(SystemError) in try valueOrErrno(operation) { call(v.baseAddress!, Int32(v.count)) } }
            }.get()
        } catch {
            failure = error
            return 0
        }
    }

    /// `O_DIRECT` with buffers not aligned to ``directAlignment`` (GHT-BLK-24): the call goes
    /// through one aligned bounce buffer instead, copied from `parts` before it (`copyIn`, a
    /// write) or into them after it (a read). Otherwise `call` gets `parts` as they are.
    private static func bouncedIfUnaligned(_ direct: Bool, _ parts: [UnsafeMutableRawBufferPointer], copyIn: Bool,
                                           _ call: ([UnsafeMutableRawBufferPointer]) -> Int) -> Int {
        guard direct, !isDirectAligned(parts) else { return call(parts) }
        let bounce = makeBounceBuffer(for: parts, copyingIn: copyIn)
        defer { bounce.base.deallocate() }
        let n = call([bounce.bytes])
        if !copyIn {
            var at = 0
            for part in parts where at < n {
                let k = min(part.count, n - at)
                part.baseAddress!.copyMemory(from: bounce.bytes.baseAddress! + at, byteCount: k)
                at += k
            }
        }
        return n
    }

    private static func position(_ offset: UInt64, _ done: Int) -> off_t { off_t(Int64(bitPattern: offset + UInt64(done))) }

    /// Makes every completed write durable (`fdatasync`): a block device's FLUSH.
    public func synchronize() throws(SystemError) {
        let raw = fd.rawValue
        try nothingOrErrno("fdatasync") { fdatasync(raw) }
    }

    /// Deallocates a range, which then reads as zeros; the size stays (a block device's DISCARD).
    public func deallocate(at offset: UInt64, length: UInt64) throws(SystemError) {
        let raw = fd.rawValue
        try nothingOrErrno("fallocate(PUNCH_HOLE)") { CVirtioShim_punch_hole(raw, Int64(bitPattern: offset), Int64(bitPattern: length)) }
    }

    /// Makes a range read as zeros (a block device's WRITE_ZEROES): `fallocate(ZERO_RANGE)`, or
    /// zeros written where the file system cannot.
    public func zero(at offset: UInt64, length: UInt64) throws(SystemError) {
        let raw = fd.rawValue
        do throws(SystemError) {
            try nothingOrErrno("fallocate(ZERO_RANGE)") { CVirtioShim_zero_range(raw, Int64(bitPattern: offset), Int64(bitPattern: length)) }
            return
        } catch {
            guard error.errno == EOPNOTSUPP || error.errno == EINVAL else { throw error }
        }
        // Aligned, so that an O_DIRECT file takes it too.
        let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024, alignment: Self.bounceAlignment)
        defer { chunk.deallocate() }
        chunk.initializeMemory(as: UInt8.self, repeating: 0)
        var position = offset, left = length
        while left > 0 {
            let n = Int(min(UInt64(chunk.count), left))
            let written = try valueOrErrno("pwrite") { pwrite(raw, chunk.baseAddress!, n, off_t(Int64(bitPattern: position))) }
            position += UInt64(written)
            left -= UInt64(written)
        }
    }
}
