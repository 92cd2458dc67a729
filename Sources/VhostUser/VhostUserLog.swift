/// The log description of SET_LOG_BASE under LOG_SHMFD (vhost-user.rst "Log description";
/// QEMU's `VhostUserLog`): le64 mmap_size, le64 mmap_offset — 16 bytes, with the log's file
/// descriptor in the ancillary data. The log is a bitmap of guest-physical 4 KiB pages
/// (vhost-user.rst "Migration"); the bit of guest address 0 is the first bit at `mmapOffset`.
@frozen
public struct VhostUserLogArea: Hashable, Sendable {
    /// `mmap_size`: the bytes of the bitmap.
    public var size: UInt64
    /// `mmap_offset`: where the bitmap starts in the file.
    public var offset: UInt64

    /// Bytes of a log description.
    public static let byteCount = 16
    /// The bytes of guest memory one byte of the log covers (8 pages of `VHOST_LOG_PAGE`).
    public static let bytesPerLogByte: UInt64 = 8 * 4096

    @inlinable
    public init(size: UInt64, offset: UInt64 = 0) {
        self.size = size
        self.offset = offset
    }

    public func encoded() -> [UInt8] {
        var w = VhostUserWriter(capacity: Self.byteCount)
        w.u64(size)
        w.u64(offset)
        return w.bytes
    }

    /// Decodes and validates a 16-byte payload.
    package static func decode(_ bytes: [UInt8]) throws(VhostUserProtocolError) -> VhostUserLogArea {
        var r = VhostUserReader(bytes)
        let area = VhostUserLogArea(size: r.u64(), offset: r.u64())
        try area.validate()
        return area
    }

    /// GHT-LOG-02: a log of at least one byte whose end, `offset + size`, is a file offset
    /// (at most 2^63 − 1) without overflow. Whether the file is that long, and whether the log
    /// covers the guest's memory, the back-end checks against the descriptor and the memory table.
    public func validate() throws(VhostUserProtocolError) {
        let request = VhostUserRequest.setLogBase.rawValue
        guard size > 0 else { throw .invalidLogArea(request: request, size: size, offset: offset) }
        let (end, overflow) = offset.addingReportingOverflow(size)
        guard !overflow, end <= UInt64(Int64.max) else { throw .invalidLogArea(request: request, size: size, offset: offset) }
    }

    /// The log bytes needed to cover guest-physical addresses up to `end` (exclusive).
    @inlinable
    public static func bytesCovering(guestEnd end: UInt64) -> UInt64 {
        end / bytesPerLogByte + (end % bytesPerLogByte == 0 ? 0 : 1)
    }
}
