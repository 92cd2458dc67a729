#if canImport(Glibc)
import Glibc
#endif

/// A ``StorageFile``'s operations prepared on an ``IOUring`` instead of made at once: what a
/// block device with many requests in the kernel per queue submits. The ring reports each one
/// by its `userData` (``IOUring/reap(_:)``); the buffers must stay valid until then.
extension StorageFile {
    /// `preadv` of `buffers` at `offset`. A short result is the end of the file (or of what
    /// the kernel would give): the caller decides, the ring does not resume it.
    public func prepareRead(on ring: IOUring, at offset: UInt64, into buffers: [UnsafeMutableRawBufferPointer],
                            userData: UInt64) throws(IOUringPrepareFailure) {
        try ring.prepareReadv(fd, at: offset, buffers: buffers, userData: userData)
    }

    /// `pwritev` of `buffers` at `offset`.
    public func prepareWrite(on ring: IOUring, at offset: UInt64, from buffers: [UnsafeRawBufferPointer],
                             userData: UInt64) throws(IOUringPrepareFailure) {
        try ring.prepareWritev(fd, at: offset, buffers: buffers, userData: userData)
    }

    /// `fdatasync`, as ``synchronize()``.
    public func prepareSynchronize(on ring: IOUring, userData: UInt64, ordering: IOUringOrdering = []) throws(IOUringPrepareFailure) {
        try ring.prepareDataSync(fd, userData: userData, ordering: ordering)
    }

    /// `fallocate` of a range with the file's size kept: ``deallocate(at:length:)`` is
    /// `.punchHole`, ``zero(at:length:)`` is `.zeroRange` (answered `EOPNOTSUPP` where the file
    /// system cannot).
    public func prepareAllocation(on ring: IOUring, _ mode: IOUring.AllocationMode, at offset: UInt64, length: UInt64,
                                  userData: UInt64, ordering: IOUringOrdering = []) throws(IOUringPrepareFailure) {
        try ring.prepareFallocate(fd, mode, at: offset, length: length, userData: userData, ordering: ordering)
    }
}

extension StorageFile {
    /// The alignment of the memory a bounce buffer for `O_DIRECT` gets: a page.
    public static let bounceAlignment = 4096

    /// Whether `parts` can go to an `O_DIRECT` transfer as they are: every address and length
    /// a multiple of ``directAlignment``. Others go through an aligned bounce buffer.
    public static func isDirectAligned(_ parts: [UnsafeRawBufferPointer]) -> Bool {
        parts.allSatisfy { Int(bitPattern: $0.baseAddress) % directAlignment == 0 && $0.count % directAlignment == 0 }
    }

    /// ``isDirectAligned(_:)`` for writable parts.
    public static func isDirectAligned(_ parts: [UnsafeMutableRawBufferPointer]) -> Bool {
        parts.allSatisfy { Int(bitPattern: $0.baseAddress) % directAlignment == 0 && $0.count % directAlignment == 0 }
    }

    /// Page-aligned memory for an `O_DIRECT` transfer of `parts` (GHT-BLK-24): `bytes`, their
    /// total length, filled with their contents in order when `copyingIn` (a write). The caller
    /// deallocates `base`.
    public static func makeBounceBuffer(for parts: [UnsafeMutableRawBufferPointer], copyingIn: Bool)
        -> (base: UnsafeMutableRawBufferPointer, bytes: UnsafeMutableRawBufferPointer) {
        let total = parts.reduce(0) { $0 + $1.count }
        let base = UnsafeMutableRawBufferPointer.allocate(byteCount: max(total, 1), alignment: bounceAlignment)
        if copyingIn {
            var at = 0
            for part in parts where part.count > 0 {
                UnsafeMutableRawBufferPointer(rebasing: base[at..<at + part.count]).copyMemory(from: UnsafeRawBufferPointer(part))
                at += part.count
            }
        }
        return (base, UnsafeMutableRawBufferPointer(rebasing: base[0..<total]))
    }

    /// The file's size now (`fstat`): where a read that came back short found the end.
    public func currentSize() throws(SystemError) -> UInt64 {
        let raw = fd.rawValue
        var info = stat()
        try nothingOrErrno("fstat") { fstat(raw, &info) }
        return UInt64(max(info.st_size, 0))
    }

    /// Finishes a ring's `.zeroRange` of `length` bytes at `offset`: nothing when it succeeded;
    /// where the file system cannot zero a range (`EOPNOTSUPP`, `EINVAL`), ``zero(at:length:)``
    /// writes the zeros; any other failure is thrown.
    public func finishZero(_ completion: IOUringCompletion, at offset: UInt64, length: UInt64) throws(SystemError) {
        do {
            _ = try completion.value("fallocate(ZERO_RANGE)")
        } catch where error.errno == EOPNOTSUPP || error.errno == EINVAL {
            try zero(at: offset, length: length)
        }
    }
}
