/// The request payload of SET_DEVICE_STATE_FD (vhost-user.rst "Migrating back-end state";
/// QEMU's `VhostUserTransferDeviceState`): le32 direction, le32 phase — 8 bytes, with the
/// front-end's end of the transfer pipe in the ancillary data.
@frozen
public struct VhostUserDeviceStateTransfer: Hashable, Sendable {
    /// Which way the state goes.
    public enum Direction: UInt32, Hashable, Sendable {
        /// The back-end writes its state into the descriptor (the migration's source).
        case save = 0
        /// The back-end reads its state from the descriptor (the destination).
        case load = 1
    }

    /// When in the migration the transfer happens.
    public enum Phase: UInt32, Hashable, Sendable {
        /// The device is stopped (every ring stopped): the only phase vhost-user.rst defines.
        case stopped = 0
    }

    public var direction: Direction
    public var phase: Phase

    /// Bytes of the payload.
    public static let byteCount = 8
    /// The reply's bit 8: no descriptor comes back (the back-end uses the front-end's pipe).
    public static let noFileDescriptorFlag: UInt64 = 0x100

    @inlinable
    public init(direction: Direction, phase: Phase = .stopped) {
        self.direction = direction
        self.phase = phase
    }

    public func encoded() -> [UInt8] {
        var w = VhostUserWriter(capacity: Self.byteCount)
        w.u32(direction.rawValue)
        w.u32(phase.rawValue)
        return w.bytes
    }

    /// GHT-DST-02: decodes an 8-byte payload, refusing a direction or phase vhost-user.rst does
    /// not define.
    package static func decode(_ bytes: [UInt8]) throws(VhostUserProtocolError) -> VhostUserDeviceStateTransfer {
        var r = VhostUserReader(bytes)
        let rawDirection = r.u32(), rawPhase = r.u32()
        let request = VhostUserRequest.setDeviceStateFD.rawValue
        guard let direction = Direction(rawValue: rawDirection) else { throw .reservedBitsSet(request: request, value: UInt64(rawDirection)) }
        guard let phase = Phase(rawValue: rawPhase) else { throw .reservedBitsSet(request: request, value: UInt64(rawPhase) << 32) }
        return VhostUserDeviceStateTransfer(direction: direction, phase: phase)
    }
}
