import VirtioCore

/// A REPLY_ACK payload (vhost-user.rst "VHOST_USER_PROTOCOL_F_REPLY_ACK"): a u64, 0 for
/// success, anything else for failure.
@frozen
public struct VhostUserAck: Hashable, Sendable {
    /// The u64 as it travels.
    public var status: UInt64

    @inlinable public init(status: UInt64) { self.status = status }

    /// Status 0.
    public static let success = VhostUserAck(status: 0)
    /// A failure with the given non-zero code (1 if `code` is 0).
    public static func failure(_ code: UInt64 = 1) -> VhostUserAck { VhostUserAck(status: code == 0 ? 1 : code) }

    /// True for status 0.
    @inlinable public var isSuccess: Bool { status == 0 }
}

/// A back-end reply to a front-end request (vhost-user.rst "Communication" and the
/// `:reply payload:` of each request). Each case knows its request number.
public enum VhostUserReply: Hashable, Sendable {
    /// GET_FEATURES.
    case features(VirtioFeatures)
    /// GET_PROTOCOL_FEATURES.
    case protocolFeatures(VhostUserProtocolFeatures)
    /// GET_QUEUE_NUM.
    case queueCount(UInt64)
    /// GET_MAX_MEM_SLOTS.
    case memorySlotCount(UInt64)
    /// GET_STATUS: the status byte, sent as a u64.
    case status(DeviceStatus)
    /// GET_VRING_BASE: the ring's index and its next available index.
    case vringBase(VhostUserVringState)
    /// GET_CONFIG: the configuration bytes, with the offset and size of the request.
    case config(VhostUserConfig)
    /// GET_CONFIG failed: vhost-user.rst's empty payload ("zero length of payload to indicate
    /// an error").
    case configUnavailable
    /// A REPLY_ACK (NEED_REPLY set, or IOTLB_MSG and REVOKE_GRANTS, which are always
    /// acknowledged), for the given request.
    case ack(VhostUserRequest, VhostUserAck)
    /// GET_INFLIGHT_FD: the area the back-end made; one fd (its memfd) travels with it.
    case inflight(VhostUserInflight)

    /// The request answered.
    public var request: VhostUserRequest {
        switch self {
        case .features: return .getFeatures
        case .protocolFeatures: return .getProtocolFeatures
        case .queueCount: return .getQueueNum
        case .memorySlotCount: return .getMaxMemorySlots
        case .status: return .getStatus
        case .vringBase: return .getVringBase
        case .config, .configUnavailable: return .getConfig
        case .ack(let request, _): return request
        case .inflight: return .getInflightFD
        }
    }

    /// The payload bytes, unchecked.
    public func encodedPayload() -> [UInt8] {
        switch self {
        case .features(let f): return VhostUserMessage.u64(f.rawValue)
        case .protocolFeatures(let f): return VhostUserMessage.u64(f.rawValue)
        case .queueCount(let n), .memorySlotCount(let n): return VhostUserMessage.u64(n)
        case .status(let s): return VhostUserMessage.u64(UInt64(s.rawValue))
        case .vringBase(let state): return state.encoded()
        case .config(let config): return config.encoded()
        case .configUnavailable: return []
        case .ack(_, let ack): return VhostUserMessage.u64(ack.status)
        case .inflight(let inflight): return inflight.encoded()
        }
    }
}

extension VhostUserCodec {
    /// Header (version 1, REPLY) and payload of a back-end reply. A configuration reply is
    /// validated like a request (GHT-VU-13).
    public static func encodeReply(_ reply: VhostUserReply) throws(VhostUserProtocolError) -> [UInt8] {
        if case .config(let config) = reply { try config.validate() }
        if case .inflight(let inflight) = reply { try inflight.validateArea() }
        return try frame(request: reply.request.rawValue, payload: reply.encodedPayload(), header: { .reply($0, payloadSize: $1) })
    }

    /// Decodes the back-end's reply to `request`, as a front-end (GHT-VU-18): the header is
    /// valid and carries REPLY, answers `request`'s number, has no file descriptor and exactly
    /// the payload the request's reply has. GET requests get their typed reply (GET_VRING_BASE
    /// must echo the ring index, GET_CONFIG the offset and size, or be empty); every other
    /// supported request gets a REPLY_ACK. Replies to unsupported requests are refused.
    public static func decodeReply(header: VhostUserHeader, payload: some Collection<UInt8>, fileDescriptorCount: Int,
                                   answering request: VhostUserMessage) throws(VhostUserProtocolError) -> VhostUserReply {
        let raw = request.request.rawValue
        // GET_INFLIGHT_FD's reply is the one that carries a descriptor: the area's memfd.
        let fds = request.request == .getInflightFD ? 1 : 0
        let bytes = try checkedReply(header, payload, fileDescriptorCount: fileDescriptorCount, request: raw, expectedFileDescriptors: fds)
        func u64() throws(VhostUserProtocolError) -> UInt64 {
            guard bytes.count == 8 else { throw .wrongPayloadSize(request: raw, expected: 8, actual: bytes.count) }
            var r = VhostUserReader(bytes)
            return r.u64()
        }
        switch request {
        case .getFeatures: return .features(VirtioFeatures(rawValue: try u64()))
        case .getProtocolFeatures: return .protocolFeatures(VhostUserProtocolFeatures(rawValue: try u64()))
        case .getQueueNum: return .queueCount(try u64())
        case .getMaxMemorySlots: return .memorySlotCount(try u64())
        case .getStatus:
            let value = try u64()
            guard value <= 0xFF else { throw .reservedBitsSet(request: raw, value: value) }
            return .status(DeviceStatus(rawValue: UInt8(value)))
        case .getVringBase(let asked):
            guard bytes.count == VhostUserVringState.byteCount else {
                throw .wrongPayloadSize(request: raw, expected: VhostUserVringState.byteCount, actual: bytes.count)
            }
            var r = VhostUserReader(bytes)
            let state = VhostUserVringState(from: &r)
            guard state.index == asked.index else {
                throw .replyFieldMismatch(request: raw, expected: UInt64(asked.index), actual: UInt64(state.index))
            }
            return .vringBase(state)
        case .getConfig(let asked):
            if bytes.isEmpty { return .configUnavailable }
            let expected = VhostUserConfig.headerByteCount + asked.data.count
            guard bytes.count == expected else { throw .wrongPayloadSize(request: raw, expected: expected, actual: bytes.count) }
            let config = try VhostUserConfig.decode(bytes, request: raw)
            guard config.offset == asked.offset else {
                throw .replyFieldMismatch(request: raw, expected: UInt64(asked.offset), actual: UInt64(config.offset))
            }
            return .config(config)
        case .getInflightFD(let asked):
            guard bytes.count == VhostUserInflight.byteCount else {
                throw .wrongPayloadSize(request: raw, expected: VhostUserInflight.byteCount, actual: bytes.count)
            }
            let area = VhostUserInflight.decode(bytes)
            try area.validateArea()
            // GHT-INF-01: the area is for the queues asked for.
            guard area.queueCount == asked.queueCount, area.queueSize == asked.queueSize else {
                throw .replyFieldMismatch(request: raw, expected: UInt64(asked.queueCount) << 16 | UInt64(asked.queueSize),
                                          actual: UInt64(area.queueCount) << 16 | UInt64(area.queueSize))
            }
            return .inflight(area)
        case .unsupported:
            throw .unsupportedReply(request: raw)
        default:
            return .ack(request.request, VhostUserAck(status: try u64()))
        }
    }

    /// The checks every reply shares: valid header, REPLY set, the expected request number,
    /// the declared length, no file descriptors (one for GET_INFLIGHT_FD).
    package static func checkedReply(_ header: VhostUserHeader, _ payload: some Collection<UInt8>, fileDescriptorCount: Int,
                             request: UInt32, expectedFileDescriptors: Int = 0) throws(VhostUserProtocolError) -> [UInt8] {
        try header.validate()
        guard header.isReply else { throw .missingReplyFlag(request: header.request) }
        guard header.request == request else { throw .replyMismatch(expected: request, actual: header.request) }
        let bytes = try checkedPayload(header, payload)
        guard fileDescriptorCount == expectedFileDescriptors else {
            let expected = expectedFileDescriptors...expectedFileDescriptors
            throw .wrongFileDescriptorCount(request: request, expected: expected, actual: fileDescriptorCount)
        }
        return bytes
    }
}
