#if canImport(Glibc)
import Glibc
#endif
import CVirtioShim

/// How an ``IOUring`` entry is ordered against the others (`sqe->flags`).
public struct IOUringOrdering: OptionSet, Sendable {
    public var rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// IOSQE_IO_DRAIN: the entry starts only after every entry submitted before it completed,
    /// and the entries after it wait for it.
    public static let drain = Self(rawValue: UInt8(CVIRTIOSHIM_URING_DRAIN))
}

/// Why an entry could not be prepared.
public enum IOUringPrepareFailure: Error, Sendable, Equatable {
    /// The submission ring, the iovec room of this batch or the bound on operations in flight
    /// (``IOUring/completionCapacity``) is used up: ``IOUring/submit()`` (and reaping) makes
    /// room again.
    case full
    /// The vector has more buffers than one entry may carry (`IOV_MAX`), whatever is free.
    case tooManyBuffers
}

extension IOUring {
    /// The most buffers one readv/writev entry carries (`IOV_MAX`).
    public static let maxBuffersPerEntry = 1024

    /// Prepares `preadv(fd, buffers, offset)`: its completion's result is the bytes read.
    /// The buffers must stay valid until the completion was reaped.
    public func prepareReadv(_ fd: FileDescriptor, at offset: UInt64, buffers: [UnsafeMutableRawBufferPointer], userData: UInt64,
                             ordering: IOUringOrdering = []) throws(IOUringPrepareFailure) {
        try prepareVectored(CVIRTIOSHIM_URING_READV, fd, offset, count: buffers.count, userData: userData, ordering: ordering) { k in
            iovec(iov_base: buffers[k].baseAddress, iov_len: buffers[k].count)
        }
    }

    /// Prepares `pwritev(fd, buffers, offset)`: its completion's result is the bytes written.
    /// The buffers must stay valid until the completion was reaped.
    public func prepareWritev(_ fd: FileDescriptor, at offset: UInt64, buffers: [UnsafeRawBufferPointer], userData: UInt64,
                              ordering: IOUringOrdering = []) throws(IOUringPrepareFailure) {
        try prepareVectored(CVIRTIOSHIM_URING_WRITEV, fd, offset, count: buffers.count, userData: userData, ordering: ordering) { k in
            iovec(iov_base: UnsafeMutableRawPointer(mutating: buffers[k].baseAddress), iov_len: buffers[k].count)
        }
    }

    /// Prepares `fdatasync(fd)` (IORING_OP_FSYNC with IORING_FSYNC_DATASYNC).
    public func prepareDataSync(_ fd: FileDescriptor, userData: UInt64, ordering: IOUringOrdering = []) throws(IOUringPrepareFailure) {
        try prepare(CVIRTIOSHIM_URING_FDATASYNC, fd, offset: 0, length: 0, userData: userData, ordering: ordering)
    }

    /// What an IORING_OP_FALLOCATE entry does to its range (the file's size stays, KEEP_SIZE).
    public enum AllocationMode: Sendable {
        /// FALLOC_FL_PUNCH_HOLE: deallocated; reads as zeros.
        case punchHole
        /// FALLOC_FL_ZERO_RANGE: reads as zeros, stays allocated (`EOPNOTSUPP` where the file
        /// system cannot).
        case zeroRange
        /// Mode 0: allocated (holes filled with zeros), contents kept.
        case allocate
    }

    /// Prepares `fallocate(fd, mode | KEEP_SIZE, offset, length)`.
    public func prepareFallocate(_ fd: FileDescriptor, _ mode: AllocationMode, at offset: UInt64, length: UInt64, userData: UInt64,
                                 ordering: IOUringOrdering = []) throws(IOUringPrepareFailure) {
        let operation: CVirtioShim_uring_operation
        switch mode {
        case .punchHole: operation = CVIRTIOSHIM_URING_PUNCH_HOLE
        case .zeroRange: operation = CVIRTIOSHIM_URING_ZERO_RANGE
        case .allocate: operation = CVIRTIOSHIM_URING_ALLOCATE
        }
        try prepare(operation, fd, offset: offset, length: length, userData: userData, ordering: ordering)
    }

    /// Prepares a no-op (IORING_OP_NOP): it completes with result 0.
    public func prepareNoOperation(userData: UInt64, ordering: IOUringOrdering = []) throws(IOUringPrepareFailure) {
        try prepare(CVIRTIOSHIM_URING_NOP, nil, offset: 0, length: 0, userData: userData, ordering: ordering)
    }

    /// Whether one more entry fits in flight and in the submission ring.
    private var hasRoom: Bool { inFlight < completionCapacity }

    private func prepareVectored(_ operation: CVirtioShim_uring_operation, _ fd: FileDescriptor, _ offset: UInt64, count: Int,
                                 userData: UInt64, ordering: IOUringOrdering, _ vector: (Int) -> iovec) throws(IOUringPrepareFailure) {
        guard count <= Self.maxBuffersPerEntry else { throw .tooManyBuffers }
        guard hasRoom, iovecsUsed + count <= iovecs.count else { throw .full }
        let base = iovecs.baseAddress! + iovecsUsed
        for k in 0..<count { base[k] = vector(k) }
        var request = CVirtioShim_uring_request(user_data: userData, offset: offset, length: 0, iovecs: base, iovec_count: UInt32(count),
                                                fd: fd.rawValue, operation: UInt8(operation.rawValue), sqe_flags: ordering.rawValue)
        guard CVirtioShim_uring_prepare(ring, &request) == 0 else { throw .full }
        iovecsUsed += count
        inFlight += 1
    }

    private func prepare(_ operation: CVirtioShim_uring_operation, _ fd: FileDescriptor?, offset: UInt64, length: UInt64,
                         userData: UInt64, ordering: IOUringOrdering) throws(IOUringPrepareFailure) {
        guard hasRoom else { throw .full }
        var request = CVirtioShim_uring_request(user_data: userData, offset: offset, length: length, iovecs: nil, iovec_count: 0,
                                                fd: fd?.rawValue ?? -1, operation: UInt8(operation.rawValue), sqe_flags: ordering.rawValue)
        guard CVirtioShim_uring_prepare(ring, &request) == 0 else { throw .full }
        inFlight += 1
    }
}
