/// The payload of GET_INFLIGHT_FD and SET_INFLIGHT_FD (vhost-user.rst "Inflight description";
/// QEMU `VhostUserInflight`; 24 bytes):
///
/// | offset | field |
/// |---|---|
/// | 0 | u64 mmap size: bytes of the in-flight area |
/// | 8 | u64 mmap offset: where the area starts in the file |
/// | 16 | u16 number of queues |
/// | 18 | u16 queue size |
/// | 20 | 4 bytes of padding (QEMU's struct is 8-aligned) |
///
/// GET_INFLIGHT_FD sends it with only the queue count and size filled; the reply carries all of
/// it and one file descriptor, the area's memfd. SET_INFLIGHT_FD hands the area (and its fd) to
/// a back-end, the same one or a restarted one (Spec/restart.md §1).
@frozen
public struct VhostUserInflight: Hashable, Sendable {
    public var mmapSize: UInt64
    public var mmapOffset: UInt64
    public var queueCount: UInt16
    public var queueSize: UInt16

    /// Bytes of the payload.
    public static let byteCount = 24
    /// The largest queue size vhost-user allows (split and packed rings: 32768).
    public static let maximumQueueSize: UInt16 = 32768

    @inlinable
    public init(mmapSize: UInt64 = 0, mmapOffset: UInt64 = 0, queueCount: UInt16, queueSize: UInt16) {
        self.mmapSize = mmapSize
        self.mmapOffset = mmapOffset
        self.queueCount = queueCount
        self.queueSize = queueSize
    }

    /// The 24 payload bytes, padding zero.
    public func encoded() -> [UInt8] {
        var w = VhostUserWriter(capacity: Self.byteCount)
        w.u64(mmapSize)
        w.u64(mmapOffset)
        w.u16(queueCount)
        w.u16(queueSize)
        w.zeros(4)
        return w.bytes
    }

    /// Reads the payload; `bytes` has ``byteCount`` bytes (the caller checked).
    package static func decode(_ bytes: [UInt8]) -> VhostUserInflight {
        var r = VhostUserReader(bytes)
        let size = r.u64(), offset = r.u64()
        let count = r.u16(), queueSize = r.u16()
        return VhostUserInflight(mmapSize: size, mmapOffset: offset, queueCount: count, queueSize: queueSize)
    }

    /// GHT-INF-01: the fields every in-flight payload must satisfy: at least one queue, a queue
    /// size from 1 to ``maximumQueueSize``. Not necessarily a power of 2: a packed ring's size
    /// need not be one (VIRTIO 1.2 §2.8); a split queue's area must match its ring's size,
    /// which is checked when the queue starts.
    public func validateGeometry() throws(VhostUserProtocolError) {
        guard queueCount > 0 else { throw .invalidInflight(.queueCount(queueCount)) }
        guard queueSize > 0, queueSize <= Self.maximumQueueSize else {
            throw .invalidInflight(.queueSize(queueSize))
        }
    }

    /// GHT-INF-01: an area to map (SET_INFLIGHT_FD, and GET_INFLIGHT_FD's reply): the geometry,
    /// a non-empty size, and an offset plus size that fit a file offset without overflow. The
    /// receiver still checks the window against the file's real size (fstat) when it maps it.
    public func validateArea() throws(VhostUserProtocolError) {
        try validateGeometry()
        guard mmapSize > 0, mmapSize <= UInt64(Int.max) else { throw .invalidInflight(.mmapSize(mmapSize)) }
        guard VhostUserRange.fitsFileOffset(offset: mmapOffset, length: mmapSize) else {
            throw .invalidInflight(.mmapOffset(mmapOffset))
        }
    }
}
