/// The flags word of a vhost-user header (vhost-user.rst "Header"; QEMU `VhostUserHeader.flags`).
///
/// Bits 0–1 hold the version (1), bit 2 marks a reply (`VHOST_USER_REPLY_MASK`), bit 3 asks for
/// a REPLY_ACK (`VHOST_USER_NEED_REPLY_MASK`). Every other bit is reserved and refused
/// (GHT-VU-03).
@frozen
public struct VhostUserHeaderFlags: OptionSet, Hashable, Sendable {
    public var rawValue: UInt32
    @inlinable public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// Version 1 in bits 0–1 (`VHOST_USER_VERSION`).
    @inlinable public static var version1: VhostUserHeaderFlags { VhostUserHeaderFlags(rawValue: 0x1) }
    /// The message is a reply (`VHOST_USER_REPLY_MASK`, bit 2).
    @inlinable public static var reply: VhostUserHeaderFlags { VhostUserHeaderFlags(rawValue: 0x4) }
    /// The sender wants a REPLY_ACK (`VHOST_USER_NEED_REPLY_MASK`, bit 3).
    @inlinable public static var needReply: VhostUserHeaderFlags { VhostUserHeaderFlags(rawValue: 0x8) }

    /// The version field (bits 0–1).
    public static let versionMask: UInt32 = 0x3
    /// Every bit this protocol version defines.
    public static let definedBits: UInt32 = 0xF

    /// The version number carried in bits 0–1.
    @inlinable public var version: UInt32 { rawValue & Self.versionMask }
}

/// The 12-byte header in front of every vhost-user message (vhost-user.rst "Header"; QEMU
/// `VhostUserHeader`): le32 request, le32 flags, le32 size of the payload that follows.
///
/// ``decode(_:)`` checks everything the header alone can tell: the version, the reserved flag
/// bits, and the payload size bound. A reader therefore refuses an oversized message before it
/// reads or buffers a single payload byte (GHT-VU-04).
@frozen
public struct VhostUserHeader: Hashable, Sendable {
    /// The request number (front-end or back-end channel numbering, depending on the socket).
    public var request: UInt32
    /// Version, REPLY and NEED_REPLY.
    public var flags: VhostUserHeaderFlags
    /// The number of payload bytes after the header.
    public var payloadSize: UInt32

    /// Bytes in a header.
    public static let byteCount = 12
    /// The only protocol version (`VHOST_USER_VERSION`).
    public static let version: UInt32 = 1
    /// The largest payload accepted (GHT-VU-04). The largest message this transport parses is a
    /// configuration access (12 + 256 bytes); 4096 leaves room for requests that are decoded only
    /// as unsupported (crypto sessions) without letting a peer make us buffer more.
    public static let maximumPayloadSize = 4096
    /// The most file descriptors one message may carry (`VHOST_MEMORY_BASELINE_NREGIONS`, and
    /// vhost-user.rst's "at most 8 descriptors in each message").
    public static let maximumFileDescriptors = 8

    @inlinable
    public init(request: UInt32, flags: VhostUserHeaderFlags, payloadSize: UInt32) {
        self.request = request
        self.flags = flags
        self.payloadSize = payloadSize
    }

    /// A version-1 request header, with NEED_REPLY if asked.
    @inlinable
    public static func request(_ request: UInt32, payloadSize: Int, needReply: Bool = false) -> VhostUserHeader {
        VhostUserHeader(request: request, flags: needReply ? [.version1, .needReply] : .version1,
                        payloadSize: UInt32(truncatingIfNeeded: payloadSize))
    }

    /// A version-1 reply header.
    @inlinable
    public static func reply(_ request: UInt32, payloadSize: Int) -> VhostUserHeader {
        VhostUserHeader(request: request, flags: [.version1, .reply], payloadSize: UInt32(truncatingIfNeeded: payloadSize))
    }

    /// True if the REPLY flag is set.
    @inlinable public var isReply: Bool { flags.contains(.reply) }
    /// True if the NEED_REPLY flag is set.
    @inlinable public var needsReply: Bool { flags.contains(.needReply) }

    /// The 12 header bytes, little-endian.
    public func encoded() -> [UInt8] {
        var w = VhostUserWriter(capacity: Self.byteCount)
        append(to: &w)
        return w.bytes
    }

    package func append(to w: inout VhostUserWriter) {
        w.u32(request)
        w.u32(flags.rawValue)
        w.u32(payloadSize)
    }

    /// Decodes the first 12 bytes of `bytes` and checks what a header alone can violate:
    /// too few bytes (GHT-VU-01), a version other than 1 (GHT-VU-02), reserved flag bits
    /// (GHT-VU-03), a payload above ``maximumPayloadSize`` (GHT-VU-04). Bytes after the
    /// twelfth are ignored. Whether REPLY may be set depends on the direction and is checked
    /// by the message decoders.
    public static func decode(_ bytes: some Collection<UInt8>) throws(VhostUserProtocolError) -> VhostUserHeader {
        let prefix = Array(bytes.prefix(byteCount))
        guard prefix.count == byteCount else { throw .truncatedHeader(byteCount: prefix.count) }
        var r = VhostUserReader(prefix)
        let header = VhostUserHeader(request: r.u32(), flags: VhostUserHeaderFlags(rawValue: r.u32()), payloadSize: r.u32())
        try header.validate()
        return header
    }

    /// The header checks of ``decode(_:)`` on a header already in memory.
    public func validate() throws(VhostUserProtocolError) {
        guard flags.version == Self.version else { throw .unsupportedVersion(flags.version) }
        guard flags.rawValue & ~VhostUserHeaderFlags.definedBits == 0 else { throw .reservedFlags(flags.rawValue) }
        guard payloadSize <= Self.maximumPayloadSize else {
            throw .payloadTooLarge(size: payloadSize, maximum: Self.maximumPayloadSize)
        }
    }
}
