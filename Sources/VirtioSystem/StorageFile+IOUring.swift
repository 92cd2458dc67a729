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
