import VirtioCore

/// A decoded front-end request: one case per request number of vhost-user.rst "Front-end
/// message types" that this transport implements, the two grant-table requests, and
/// ``unsupported(_:payload:)`` for the requests it does not implement (GHT-VU-17).
///
/// File descriptors are not part of the value: the codec checks their count, the session owns
/// them. ``fileDescriptorCount`` says how many a well-formed message carries.
public enum VhostUserMessage: Hashable, Sendable {
    case getFeatures
    /// Features the front-end accepts (device bits, transport bits, bit 30 for protocol features).
    case setFeatures(VirtioFeatures)
    case setOwner
    /// Deprecated; the back-end either ignores it or disables all rings.
    case resetOwner
    /// One fd per region.
    case setMemoryTable(VhostUserMemoryTable)
    case setVringNum(VhostUserVringState)
    case setVringAddress(VhostUserVringAddress)
    case setVringBase(VhostUserVringState)
    /// Stops the ring; the reply carries its next available index.
    case getVringBase(VhostUserVringState)
    case setVringKick(VhostUserVringFile)
    case setVringCall(VhostUserVringFile)
    case setVringErr(VhostUserVringFile)
    case getProtocolFeatures
    case setProtocolFeatures(VhostUserProtocolFeatures)
    case getQueueNum
    /// `num` 1 enables, 0 disables.
    case setVringEnable(VhostUserVringState)
    /// One fd: the back-end channel socket. No payload.
    case setBackEndRequestFD
    /// UPDATE or INVALIDATE.
    case iotlb(VhostUserIOTLBMessage)
    /// `num` 0 little-endian, 1 big-endian (legacy devices, CROSS_ENDIAN).
    case setVringEndian(VhostUserVringState)
    case getConfig(VhostUserConfig)
    case setConfig(VhostUserConfig)
    case resetDevice
    /// In-band kick (INBAND_NOTIFICATIONS); `num` is 0.
    case vringKick(VhostUserVringState)
    case getMaxMemorySlots
    /// One fd: the region's memory.
    case addMemoryRegion(VhostUserMemoryRegion)
    /// The region to unmap, identified by guest address, user address and size.
    case removeMemoryRegion(VhostUserMemoryRegion)
    /// The device status byte (the u64 on the wire has no bits above 7).
    case setStatus(DeviceStatus)
    case getStatus
    /// One fd: the grant table's memfd.
    case setGrantTable(VhostUserGrantTable)
    case revokeGrants(VhostUserGrantRange)
    /// GET_INFLIGHT_FD: the queue count and size of the area wanted; the reply carries the area and its fd.
    case getInflightFD(VhostUserInflight)
    /// SET_INFLIGHT_FD, with one fd: the area to track in-flight requests in (Spec/restart.md §1).
    case setInflightFD(VhostUserInflight)
    /// A request this transport does not implement (``VhostUserRequest/isSupported`` is false),
    /// with its payload unparsed.
    case unsupported(VhostUserRequest, payload: [UInt8])

    /// The request number.
    public var request: VhostUserRequest {
        switch self {
        case .getFeatures: return .getFeatures
        case .setFeatures: return .setFeatures
        case .setOwner: return .setOwner
        case .resetOwner: return .resetOwner
        case .setMemoryTable: return .setMemoryTable
        case .setVringNum: return .setVringNum
        case .setVringAddress: return .setVringAddress
        case .setVringBase: return .setVringBase
        case .getVringBase: return .getVringBase
        case .setVringKick: return .setVringKick
        case .setVringCall: return .setVringCall
        case .setVringErr: return .setVringErr
        case .getProtocolFeatures: return .getProtocolFeatures
        case .setProtocolFeatures: return .setProtocolFeatures
        case .getQueueNum: return .getQueueNum
        case .setVringEnable: return .setVringEnable
        case .setBackEndRequestFD: return .setBackEndRequestFD
        case .iotlb: return .iotlbMessage
        case .setVringEndian: return .setVringEndian
        case .getConfig: return .getConfig
        case .setConfig: return .setConfig
        case .resetDevice: return .resetDevice
        case .vringKick: return .vringKick
        case .getMaxMemorySlots: return .getMaxMemorySlots
        case .addMemoryRegion: return .addMemoryRegion
        case .removeMemoryRegion: return .removeMemoryRegion
        case .setStatus: return .setStatus
        case .getStatus: return .getStatus
        case .setGrantTable: return .setGrantTable
        case .revokeGrants: return .revokeGrants
        case .getInflightFD: return .getInflightFD
        case .setInflightFD: return .setInflightFD
        case .unsupported(let request, _): return request
        }
    }

    /// The file descriptors a well-formed message of this value carries (GHT-VU-08): one per
    /// region for SET_MEM_TABLE, one for a vring file without NOFD, one for ADD_MEM_REG,
    /// SET_BACKEND_REQ_FD, SET_GRANT_TABLE and SET_INFLIGHT_FD, none otherwise. REM_MEM_REG is sent with none
    /// (the decoder also accepts one, as vhost-user.rst allows); an unsupported request is
    /// counted at the low end of what it may carry.
    public var fileDescriptorCount: Int {
        switch self {
        case .setMemoryTable(let table): return table.regions.count
        case .setVringKick(let file), .setVringCall(let file), .setVringErr(let file): return file.fileDescriptorCount
        case .addMemoryRegion, .setBackEndRequestFD, .setGrantTable, .setInflightFD: return 1
        case .unsupported(let request, _): return request.unsupportedFileDescriptors.lowerBound
        default: return 0
        }
    }

    /// The payload bytes, unchecked: ``VhostUserCodec/encode(_:needReply:)`` validates first.
    public func encodedPayload() -> [UInt8] {
        switch self {
        case .getFeatures, .setOwner, .resetOwner, .getProtocolFeatures, .getQueueNum, .setBackEndRequestFD,
             .resetDevice, .getMaxMemorySlots, .getStatus:
            return []
        case .setFeatures(let features): return Self.u64(features.rawValue)
        case .setProtocolFeatures(let features): return Self.u64(features.rawValue)
        case .setStatus(let status): return Self.u64(UInt64(status.rawValue))
        case .setMemoryTable(let table): return table.encoded()
        case .setVringNum(let s), .setVringBase(let s), .getVringBase(let s), .setVringEnable(let s),
             .setVringEndian(let s), .vringKick(let s):
            return s.encoded()
        case .setVringAddress(let address): return address.encoded()
        case .setVringKick(let file), .setVringCall(let file), .setVringErr(let file): return file.encoded()
        case .iotlb(let message): return message.encoded()
        case .getConfig(let config), .setConfig(let config): return config.encoded()
        case .addMemoryRegion(let region), .removeMemoryRegion(let region): return VhostUserSingleRegion.encode(region)
        case .setGrantTable(let table): return table.encoded()
        case .revokeGrants(let range): return range.encoded()
        case .getInflightFD(let inflight), .setInflightFD(let inflight): return inflight.encoded()
        case .unsupported(_, let payload): return payload
        }
    }

    package static func u64(_ value: UInt64) -> [UInt8] {
        var w = VhostUserWriter(capacity: 8)
        w.u64(value)
        return w.bytes
    }
}
