/// The packet header of virtio-vsock (VIRTIO 1.2 §5.10.6, `struct virtio_vsock_hdr`): 44 bytes,
/// little-endian, in front of every packet on the rx and tx queues.
public struct VsockHeader: Hashable, Sendable {
    public static let byteCount = 44
    /// The host's address (VMADDR_CID_HOST).
    public static let hostCID: UInt64 = 2
    /// `type`: a stream connection, the only type without VIRTIO_VSOCK_F_SEQPACKET.
    public static let typeStream: UInt16 = 1
    /// `flags` of SHUTDOWN: the sender will receive no more.
    public static let shutdownReceive: UInt32 = 1
    /// `flags` of SHUTDOWN: the sender will send no more.
    public static let shutdownSend: UInt32 = 2

    public var sourceCID: UInt64 = 0
    public var destinationCID: UInt64 = 0
    public var sourcePort: UInt32 = 0
    public var destinationPort: UInt32 = 0
    /// Payload bytes after the header (RW only).
    public var length: UInt32 = 0
    public var type: UInt16 = VsockHeader.typeStream
    /// The raw `op` (``VsockOperation`` when known).
    public var op: UInt16 = 0
    public var flags: UInt32 = 0
    /// The sender's receive buffer for this connection (credit, §5.10.6.3).
    public var bufferAllocation: UInt32 = 0
    /// Bytes the sender has taken out of that buffer so far (free-running).
    public var forwardCount: UInt32 = 0

    public init(sourceCID: UInt64 = 0, destinationCID: UInt64 = 0, sourcePort: UInt32 = 0, destinationPort: UInt32 = 0,
                length: UInt32 = 0, type: UInt16 = VsockHeader.typeStream, op: VsockOperation = .invalid, flags: UInt32 = 0,
                bufferAllocation: UInt32 = 0, forwardCount: UInt32 = 0) {
        self.sourceCID = sourceCID
        self.destinationCID = destinationCID
        self.sourcePort = sourcePort
        self.destinationPort = destinationPort
        self.length = length
        self.type = type
        self.op = op.rawValue
        self.flags = flags
        self.bufferAllocation = bufferAllocation
        self.forwardCount = forwardCount
    }

    /// Decodes the first 44 bytes of `bytes`; nil when there are fewer.
    public init?(_ bytes: [UInt8]) {
        guard bytes.count >= Self.byteCount else { return nil }
        self = bytes.withUnsafeBytes { Self(raw: $0) }
    }

    /// Decodes the first 44 bytes of `raw`, which has at least that many.
    init(raw: UnsafeRawBufferPointer) {
        precondition(raw.count >= Self.byteCount)
        func le<T: FixedWidthInteger>(_ offset: Int, _: T.Type) -> T { T(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: T.self)) }
        sourceCID = le(0, UInt64.self)
        destinationCID = le(8, UInt64.self)
        sourcePort = le(16, UInt32.self)
        destinationPort = le(20, UInt32.self)
        length = le(24, UInt32.self)
        type = le(28, UInt16.self)
        op = le(30, UInt16.self)
        flags = le(32, UInt32.self)
        bufferAllocation = le(36, UInt32.self)
        forwardCount = le(40, UInt32.self)
    }

    /// Encodes the header into the first 44 bytes of `raw` (no allocation: the rx path).
    func store(into raw: UnsafeMutableRawBufferPointer) {
        precondition(raw.count >= Self.byteCount)
        func put<T: FixedWidthInteger>(_ v: T, _ offset: Int) { raw.storeBytes(of: v.littleEndian, toByteOffset: offset, as: T.self) }
        put(sourceCID, 0); put(destinationCID, 8); put(sourcePort, 16); put(destinationPort, 20); put(length, 24)
        put(type, 28); put(op, 30); put(flags, 32); put(bufferAllocation, 36); put(forwardCount, 40)
    }

    /// The 44 bytes on the wire.
    public var bytes: [UInt8] {
        [UInt8](unsafeUninitializedCapacity: Self.byteCount) { buffer, count in
            store(into: UnsafeMutableRawBufferPointer(buffer))
            count = Self.byteCount
        }
    }

    /// The operation, nil when `op` is none the spec defines.
    public var operation: VsockOperation? { VsockOperation(rawValue: op).flatMap { $0 == .invalid ? nil : $0 } }
}

/// `op` of a vsock packet (VIRTIO 1.2 §5.10.6).
public enum VsockOperation: UInt16, Sendable {
    case invalid = 0
    case request = 1
    case response = 2
    case reset = 3
    case shutdown = 4
    case readWrite = 5
    case creditUpdate = 6
    case creditRequest = 7
}

/// The configuration space of virtio-vsock (VIRTIO 1.2 §5.10.4): `le64 guest_cid`.
public struct VsockConfigurationSpace: Hashable, Sendable {
    public var guestCID: UInt64
    public init(guestCID: UInt64) { self.guestCID = guestCID }
    public var bytes: [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: guestCID >> (8 * $0)) } }
}
