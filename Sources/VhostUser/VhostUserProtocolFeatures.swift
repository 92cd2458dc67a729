import VirtioCore

/// vhost-user protocol feature bits (vhost-user.rst "Protocol features";
/// `VHOST_USER_PROTOCOL_F_*`), exchanged with GET/SET_PROTOCOL_FEATURES once the virtio feature
/// ``VirtioFeatures/vhostUserProtocolFeatures`` (bit 30) is offered.
///
/// Bit 48, ``grantTable``, is this transport's own (Spec/vhost-user.md §4). It is far above the
/// bits QEMU has assigned so that it cannot collide with a future standard one; a peer that does
/// not know it never offers or accepts it.
@frozen
public struct VhostUserProtocolFeatures: OptionSet, Hashable, Sendable {
    public var rawValue: UInt64
    @inlinable public init(rawValue: UInt64) { self.rawValue = rawValue }

    /// The feature with bit number `bit` (0–63).
    @inlinable
    public init(bit: Int) {
        precondition((0..<64).contains(bit), "protocol feature bit out of range")
        rawValue = 1 &<< UInt64(bit)
    }

    /// MQ (0): GET_QUEUE_NUM reports the number of queues.
    @inlinable public static var multiQueue: Self { Self(bit: 0) }
    /// LOG_SHMFD (1): the dirty log lives in shared memory.
    @inlinable public static var logSharedMemory: Self { Self(bit: 1) }
    /// RARP (2): SEND_RARP.
    @inlinable public static var rarp: Self { Self(bit: 2) }
    /// REPLY_ACK (3): NEED_REPLY asks for a u64 acknowledgement of any request.
    @inlinable public static var replyAck: Self { Self(bit: 3) }
    /// NET_MTU (4): NET_SET_MTU.
    @inlinable public static var netMTU: Self { Self(bit: 4) }
    /// BACKEND_REQ (5): the back-end channel (SET_BACKEND_REQ_FD).
    @inlinable public static var backendRequest: Self { Self(bit: 5) }
    /// CROSS_ENDIAN (6): SET_VRING_ENDIAN, for legacy devices.
    @inlinable public static var crossEndian: Self { Self(bit: 6) }
    /// CRYPTO_SESSION (7).
    @inlinable public static var cryptoSession: Self { Self(bit: 7) }
    /// PAGEFAULT (8): postcopy migration.
    @inlinable public static var pageFault: Self { Self(bit: 8) }
    /// CONFIG (9): GET_CONFIG and SET_CONFIG.
    @inlinable public static var config: Self { Self(bit: 9) }
    /// BACKEND_SEND_FD (10): the back-end channel may carry file descriptors.
    @inlinable public static var backendSendFD: Self { Self(bit: 10) }
    /// HOST_NOTIFIER (11).
    @inlinable public static var hostNotifier: Self { Self(bit: 11) }
    /// INFLIGHT_SHMFD (12).
    @inlinable public static var inflightSharedMemory: Self { Self(bit: 12) }
    /// RESET_DEVICE (13).
    @inlinable public static var resetDevice: Self { Self(bit: 13) }
    /// INBAND_NOTIFICATIONS (14).
    @inlinable public static var inbandNotifications: Self { Self(bit: 14) }
    /// CONFIGURE_MEM_SLOTS (15): GET_MAX_MEM_SLOTS, ADD_MEM_REG, REM_MEM_REG.
    @inlinable public static var configureMemorySlots: Self { Self(bit: 15) }
    /// STATUS (16): SET_STATUS and GET_STATUS.
    @inlinable public static var status: Self { Self(bit: 16) }
    /// DEVICE_STATE (19): SET_DEVICE_STATE_FD and CHECK_DEVICE_STATE move the back-end's
    /// internal state (vhost-user.rst "Migrating back-end state").
    @inlinable public static var deviceState: Self { Self(bit: 19) }
    /// GRANT_TABLE (48), private to this transport: SET_GRANT_TABLE and REVOKE_GRANTS
    /// (Spec/vhost-user.md §4).
    @inlinable public static var grantTable: Self { Self(bit: 48) }

    /// The bits vhost-user.rst defines (0–16).
    public static let standard = VhostUserProtocolFeatures(rawValue: (1 << 17) - 1)
}

extension VirtioFeatures {
    /// `VHOST_USER_F_PROTOCOL_FEATURES` (bit 30, VIRTIO's legacy UNUSED bit): in the vhost-user
    /// GET/SET_FEATURES words only, it says the back-end speaks GET/SET_PROTOCOL_FEATURES.
    /// It never reaches the driver.
    @inlinable public static var vhostUserProtocolFeatures: VirtioFeatures { VirtioFeatures(rawValue: 1 << 30) }

    /// `VHOST_F_LOG_ALL` (bit 26): in the vhost-user GET/SET_FEATURES words only, the back-end
    /// can log its writes to guest memory; set by the front-end while logging is on
    /// (vhost-user.rst "Migration"). It never reaches the driver.
    @inlinable public static var vhostLogAll: VirtioFeatures { VirtioFeatures(rawValue: 1 << 26) }
}
