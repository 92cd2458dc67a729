/// A vring state description (vhost-user.rst "A vring state description"; `struct
/// vhost_vring_state`): le32 index, le32 num — 8 bytes. SET_VRING_NUM (num = queue size),
/// SET/GET_VRING_BASE (num = next available index), SET_VRING_ENABLE (num = 0 or 1),
/// SET_VRING_ENDIAN (num = 0 little, 1 big) and VRING_KICK (num = 0) share it.
@frozen
public struct VhostUserVringState: Hashable, Sendable {
    /// The queue index.
    public var index: UInt32
    /// The request-specific number.
    public var num: UInt32

    /// Bytes of a vring state.
    public static let byteCount = 8

    @inlinable
    public init(index: UInt32, num: UInt32) {
        self.index = index
        self.num = num
    }

    public func encoded() -> [UInt8] {
        var w = VhostUserWriter(capacity: Self.byteCount)
        w.u32(index)
        w.u32(num)
        return w.bytes
    }

    package init(from r: inout VhostUserReader) {
        index = r.u32()
        num = r.u32()
    }
}

/// The flags word of a vring address description (`struct vhost_vring_addr.flags`).
@frozen
public struct VhostUserVringAddressFlags: OptionSet, Hashable, Sendable {
    public var rawValue: UInt32
    @inlinable public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// `1 << VHOST_VRING_F_LOG`: writes to the used ring are logged at ``VhostUserVringAddress/log``.
    @inlinable public static var log: Self { Self(rawValue: 1) }

    /// Every flag defined; others are refused (GHT-VU-12).
    public static let defined: Self = [.log]
}

/// A vring address description (vhost-user.rst "A vring address description"; `struct
/// vhost_vring_addr`): le32 index, le32 flags, le64 descriptor, le64 used, le64 available,
/// le64 log — 40 bytes. Mind the order: used before available. The ring addresses are
/// front-end user addresses, or IOVAs (or grant handles, in grant mode) under ACCESS_PLATFORM.
@frozen
public struct VhostUserVringAddress: Hashable, Sendable {
    public var index: UInt32
    public var flags: VhostUserVringAddressFlags
    /// `desc_user_addr`.
    public var descriptor: UInt64
    /// `used_user_addr`.
    public var used: UInt64
    /// `avail_user_addr`.
    public var available: UInt64
    /// `log_guest_addr`: meaningful only with ``VhostUserVringAddressFlags/log``.
    public var log: UInt64

    /// Bytes of a vring address description.
    public static let byteCount = 40

    @inlinable
    public init(index: UInt32, flags: VhostUserVringAddressFlags = [], descriptor: UInt64, used: UInt64,
                available: UInt64, log: UInt64 = 0) {
        self.index = index
        self.flags = flags
        self.descriptor = descriptor
        self.used = used
        self.available = available
        self.log = log
    }

    public func encoded() -> [UInt8] {
        var w = VhostUserWriter(capacity: Self.byteCount)
        w.u32(index)
        w.u32(flags.rawValue)
        w.u64(descriptor)
        w.u64(used)
        w.u64(available)
        w.u64(log)
        return w.bytes
    }

    package init(from r: inout VhostUserReader) {
        index = r.u32()
        flags = VhostUserVringAddressFlags(rawValue: r.u32())
        descriptor = r.u64()
        used = r.u64()
        available = r.u64()
        log = r.u64()
    }

    /// GHT-VU-12: no flag but LOG.
    public func validate() throws(VhostUserProtocolError) {
        guard flags.isSubset(of: .defined) else {
            throw .reservedBitsSet(request: VhostUserRequest.setVringAddress.rawValue, value: UInt64(flags.rawValue))
        }
    }
}

/// The u64 of SET_VRING_KICK, SET_VRING_CALL and SET_VRING_ERR (vhost-user.rst
/// "VHOST_USER_SET_VRING_KICK"): bits 0–7 the queue index, bit 8 `VHOST_USER_VRING_NOFD_MASK`
/// (no descriptor attached: poll instead), bits 9–63 reserved (GHT-VU-11).
@frozen
public struct VhostUserVringFile: Hashable, Sendable {
    /// The queue index. The wire field has 8 bits, so queues 256 and up cannot be named here.
    public var index: UInt8
    /// False when NOFD is set: no file descriptor travels with the message.
    public var hasFileDescriptor: Bool

    /// Bytes of the payload.
    public static let byteCount = 8
    /// `VHOST_USER_VRING_IDX_MASK`.
    public static let indexMask: UInt64 = 0xFF
    /// `VHOST_USER_VRING_NOFD_MASK`.
    public static let noFileDescriptorMask: UInt64 = 0x100

    @inlinable
    public init(index: UInt8, hasFileDescriptor: Bool = true) {
        self.index = index
        self.hasFileDescriptor = hasFileDescriptor
    }

    /// The u64 as it travels.
    public var rawValue: UInt64 { UInt64(index) | (hasFileDescriptor ? 0 : Self.noFileDescriptorMask) }

    /// The file descriptors the message carries: 1, or 0 with NOFD.
    public var fileDescriptorCount: Int { hasFileDescriptor ? 1 : 0 }

    public func encoded() -> [UInt8] {
        var w = VhostUserWriter(capacity: Self.byteCount)
        w.u64(rawValue)
        return w.bytes
    }

    /// Decodes the u64, refusing reserved bits.
    package static func decode(_ value: UInt64, request: UInt32) throws(VhostUserProtocolError) -> VhostUserVringFile {
        guard value & ~(indexMask | noFileDescriptorMask) == 0 else { throw .reservedBitsSet(request: request, value: value) }
        return VhostUserVringFile(index: UInt8(truncatingIfNeeded: value), hasFileDescriptor: value & noFileDescriptorMask == 0)
    }
}
