/// The flags word of a configuration access (vhost-user.rst "Virtio device config space").
@frozen
public struct VhostUserConfigFlags: OptionSet, Hashable, Sendable {
    public var rawValue: UInt32
    @inlinable public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// `VHOST_SET_CONFIG_TYPE_MIGRATION` (1): the write restores state on a migration target and
    /// may touch read-only fields. Without it (0, `VHOST_SET_CONFIG_TYPE_FRONTEND`) the write
    /// comes from the driver.
    @inlinable public static var liveMigration: Self { Self(rawValue: 1) }

    /// Every flag defined; others are refused (GHT-VU-13).
    public static let defined: Self = [.liveMigration]
}

/// A device-configuration access (vhost-user.rst "Virtio device config space"; QEMU
/// `VhostUserConfig`): le32 offset, le32 size, le32 flags, then `size` bytes — 12 + size
/// bytes, exactly (QEMU sends `VHOST_USER_CONFIG_HDR_SIZE + config_len`).
///
/// GET_CONFIG sends it with `size` bytes the back-end ignores (QEMU sends zeros) and the reply
/// carries the configuration; SET_CONFIG carries the bytes to write.
@frozen
public struct VhostUserConfig: Hashable, Sendable {
    /// Where the access starts in the device configuration space.
    public var offset: UInt32
    public var flags: VhostUserConfigFlags
    /// The bytes; their count is the `size` field.
    public var data: [UInt8]

    /// `VHOST_USER_MAX_CONFIG_SIZE`: the configuration space accessible through vhost-user.
    public static let maximumSize = 256
    /// `VHOST_USER_CONFIG_HDR_SIZE`: offset, size and flags.
    public static let headerByteCount = 12

    @inlinable
    public init(offset: UInt32, flags: VhostUserConfigFlags = [], data: [UInt8]) {
        self.offset = offset
        self.flags = flags
        self.data = data
    }

    /// A GET_CONFIG request for `size` bytes at `offset`: the data are `size` zeros.
    public static func request(offset: UInt32, size: Int) -> VhostUserConfig {
        VhostUserConfig(offset: offset, data: Array(repeating: 0, count: max(0, size)))
    }

    /// The `size` field.
    public var size: UInt32 { UInt32(truncatingIfNeeded: data.count) }

    /// The payload bytes.
    public func encoded() -> [UInt8] {
        var w = VhostUserWriter(capacity: Self.headerByteCount + data.count)
        w.u32(offset)
        w.u32(size)
        w.u32(flags.rawValue)
        w.raw(data)
        return w.bytes
    }

    /// GHT-VU-13: size at most 256, the access inside the 256-byte space, known flags.
    public func validate() throws(VhostUserProtocolError) {
        guard data.count <= Self.maximumSize, Int(offset) <= Self.maximumSize - data.count else {
            throw .invalidConfigRange(offset: offset, size: size)
        }
        guard flags.isSubset(of: .defined) else { throw .invalidConfigFlags(flags.rawValue) }
    }

    /// Decodes and validates a configuration payload whose `size` has not been trusted yet.
    package static func decode(_ payload: [UInt8], request: UInt32) throws(VhostUserProtocolError) -> VhostUserConfig {
        guard payload.count >= headerByteCount else {
            throw .wrongPayloadSize(request: request, expected: headerByteCount, actual: payload.count)
        }
        var r = VhostUserReader(payload)
        let offset = r.u32()
        let size = r.u32()
        let flags = r.u32()
        guard size <= UInt32(maximumSize), offset <= UInt32(maximumSize) - size else {
            throw .invalidConfigRange(offset: offset, size: size)
        }
        let expected = headerByteCount + Int(size)
        guard payload.count == expected else { throw .wrongPayloadSize(request: request, expected: expected, actual: payload.count) }
        let config = VhostUserConfig(offset: offset, flags: VhostUserConfigFlags(rawValue: flags), data: r.raw(Int(size)))
        try config.validate()
        return config
    }
}
