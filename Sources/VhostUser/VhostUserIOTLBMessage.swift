/// The `type` byte of an IOTLB message (`VHOST_IOTLB_*`, linux/vhost_types.h).
public enum VhostUserIOTLBType: UInt8, CaseIterable, Hashable, Sendable {
    /// Back-end to front-end: a translation is missing.
    case miss = 1
    /// Front-end to back-end: map `[iova, iova + size)` to `uaddr` with `perm`.
    case update = 2
    /// Front-end to back-end: unmap `[iova, iova + size)`.
    case invalidate = 3
    /// Back-end to front-end: an access was refused.
    case accessFail = 4

    /// True for the types the front-end sends (on the main socket).
    public var isFrontEndType: Bool { self == .update || self == .invalidate }
}

/// The `perm` byte of an IOTLB message (`VHOST_ACCESS_*`; vhost-user.rst "An IOTLB message").
public enum VhostUserIOTLBPermission: UInt8, CaseIterable, Hashable, Sendable {
    /// 0: no access (the value a message carries where permission has no meaning).
    case none = 0
    case readOnly = 1
    case writeOnly = 2
    case readWrite = 3
}

/// An IOTLB message (vhost-user.rst "An IOTLB message"; `struct vhost_iotlb_msg`): le64 iova,
/// le64 size, le64 uaddr, u8 perm, u8 type.
///
/// `struct vhost_iotlb_msg` is 26 bytes of fields padded to its 8-byte alignment: 32 bytes on
/// every 64-bit Linux ABI, and QEMU sends `sizeof(msg.payload.iotlb)`. So the payload is exactly
/// 32 bytes and the 6 trailing bytes are padding, ignored on decode (QEMU leaves them
/// uninitialised) and zero on encode (GHT-VU-14).
///
/// Fields a type does not use are not trusted either: QEMU's INVALIDATE leaves `perm` and
/// `uaddr` uninitialised, and MISS and ACCESS_FAIL use only `iova` and `perm`. The decoder
/// therefore normalises the unused fields to 0 (``VhostUserIOTLBPermission/none`` for `perm`),
/// so a decoded message never carries stack garbage.
@frozen
public struct VhostUserIOTLBMessage: Hashable, Sendable {
    public var iova: UInt64
    public var size: UInt64
    /// `uaddr`: the front-end user address `iova` maps to (UPDATE only).
    public var userAddress: UInt64
    public var permission: VhostUserIOTLBPermission
    public var type: VhostUserIOTLBType

    /// Bytes of the payload, padding included.
    public static let byteCount = 32
    /// Bytes of fields before the padding.
    package static let fieldByteCount = 26

    @inlinable
    public init(iova: UInt64, size: UInt64, userAddress: UInt64, permission: VhostUserIOTLBPermission, type: VhostUserIOTLBType) {
        self.iova = iova
        self.size = size
        self.userAddress = userAddress
        self.permission = permission
        self.type = type
    }

    /// An UPDATE.
    public static func update(iova: UInt64, size: UInt64, userAddress: UInt64, permission: VhostUserIOTLBPermission) -> Self {
        Self(iova: iova, size: size, userAddress: userAddress, permission: permission, type: .update)
    }

    /// An INVALIDATE.
    public static func invalidate(iova: UInt64, size: UInt64) -> Self {
        Self(iova: iova, size: size, userAddress: 0, permission: .none, type: .invalidate)
    }

    /// A MISS: the back-end needs `iova` with `permission`.
    public static func miss(iova: UInt64, permission: VhostUserIOTLBPermission) -> Self {
        Self(iova: iova, size: 0, userAddress: 0, permission: permission, type: .miss)
    }

    /// An ACCESS_FAIL: an access to `iova` with `permission` was refused.
    public static func accessFail(iova: UInt64, permission: VhostUserIOTLBPermission) -> Self {
        Self(iova: iova, size: 0, userAddress: 0, permission: permission, type: .accessFail)
    }

    /// The 32 payload bytes; padding is zero.
    public func encoded() -> [UInt8] {
        var w = VhostUserWriter(capacity: Self.byteCount)
        w.u64(iova)
        w.u64(size)
        w.u64(userAddress)
        w.u8(permission.rawValue)
        w.u8(type.rawValue)
        w.zeros(Self.byteCount - Self.fieldByteCount)
        return w.bytes
    }

    /// GHT-VU-14: the type belongs to the direction (`fromFrontEnd`); an UPDATE has a
    /// permission, a non-empty size and ranges that stay below 2^64; a MISS has a permission.
    /// INVALIDATE ranges are not checked: an end past 2^64 means "to the end of the IOVA space"
    /// (``IOVASpace/invalidate(iova:size:)`` clamps it), and a size of 0 is 2^64: everything from
    /// `iova` on (QEMU 7.2 sends `addr_mask + 1` of a notifier covering the whole space, GHT-IOVA-08).
    public func validate(fromFrontEnd: Bool) throws(VhostUserProtocolError) {
        guard type.isFrontEndType == fromFrontEnd else { throw .unexpectedIOTLBType(type.rawValue) }
        switch type {
        case .update:
            guard permission != .none else { throw .invalidIOTLBPermission(permission.rawValue) }
            guard size > 0, VhostUserRange.fits(start: iova, length: size), VhostUserRange.fits(start: userAddress, length: size) else {
                throw .invalidIOTLBRange(iova: iova, size: size)
            }
        case .miss:
            guard permission != .none else { throw .invalidIOTLBPermission(permission.rawValue) }
        case .invalidate, .accessFail:
            break
        }
    }

    /// Decodes a 32-byte payload (size checked by the caller), normalises the fields its type
    /// does not use, and validates it for the direction.
    package static func decode(_ payload: [UInt8], fromFrontEnd: Bool) throws(VhostUserProtocolError) -> VhostUserIOTLBMessage {
        var r = VhostUserReader(payload)
        let iova = r.u64(), size = r.u64(), userAddress = r.u64()
        let rawPermission = r.u8(), rawType = r.u8()
        guard let type = VhostUserIOTLBType(rawValue: rawType) else { throw .unknownIOTLBType(rawType) }
        guard type.isFrontEndType == fromFrontEnd else { throw .unexpectedIOTLBType(rawType) }
        let message: VhostUserIOTLBMessage
        switch type {
        case .invalidate:
            message = .invalidate(iova: iova, size: size)
        case .update, .miss, .accessFail:
            guard let permission = VhostUserIOTLBPermission(rawValue: rawPermission) else { throw .invalidIOTLBPermission(rawPermission) }
            message = type == .update
                ? .update(iova: iova, size: size, userAddress: userAddress, permission: permission)
                : Self(iova: iova, size: 0, userAddress: 0, permission: permission, type: type)
        }
        try message.validate(fromFrontEnd: fromFrontEnd)
        return message
    }
}
