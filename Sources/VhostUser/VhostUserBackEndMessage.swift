/// A request the back-end sends on the back-end channel (vhost-user.rst "Back-end message
/// types"; the socket passed with SET_BACKEND_REQ_FD).
public enum VhostUserBackEndMessage: Hashable, Sendable {
    /// `VHOST_USER_BACKEND_IOTLB_MSG`: a MISS or an ACCESS_FAIL (32-byte `vhost_iotlb_msg`).
    case iotlb(VhostUserIOTLBMessage)
    /// `VHOST_USER_BACKEND_CONFIG_CHANGE_MSG`: no payload.
    case configChange
    /// A back-end request this transport does not implement (VRING_HOST_NOTIFIER), unparsed.
    case unsupported(VhostUserBackEndRequest, payload: [UInt8])

    /// The request number.
    public var request: VhostUserBackEndRequest {
        switch self {
        case .iotlb: return .iotlbMessage
        case .configChange: return .configChange
        case .unsupported(let request, _): return request
        }
    }

    /// The payload bytes, unchecked.
    public func encodedPayload() -> [UInt8] {
        switch self {
        case .iotlb(let message): return message.encoded()
        case .configChange: return []
        case .unsupported(_, let payload): return payload
        }
    }
}

extension VhostUserCodec {
    // MARK: Back-end side

    /// Header and payload of a back-end channel request, after validation (an IOTLB message
    /// must be a MISS or ACCESS_FAIL, GHT-VU-14). No file descriptor travels with these.
    /// With REPLY_ACK negotiated, `needReply` asks the front-end to answer once the request is
    /// handled (for a MISS: once it has sent the UPDATE, or decided not to).
    public static func encode(_ message: VhostUserBackEndMessage, needReply: Bool = false) throws(VhostUserProtocolError) -> [UInt8] {
        if case .iotlb(let iotlb) = message { try iotlb.validate(fromFrontEnd: false) }
        return try frame(request: message.request.rawValue, payload: message.encodedPayload(),
                         header: { .request($0, payloadSize: $1, needReply: needReply) })
    }

    /// An IOTLB MISS for `iova` needing `permission` (read-only, write-only or read-write).
    public static func encodeIOTLBMiss(iova: UInt64, permission: VhostUserIOTLBPermission,
                                       needReply: Bool = false) throws(VhostUserProtocolError) -> [UInt8] {
        try encode(VhostUserBackEndMessage.iotlb(.miss(iova: iova, permission: permission)), needReply: needReply)
    }

    /// Decodes the front-end's REPLY_ACK to a back-end channel request (GHT-VU-18): REPLY set,
    /// the same request number, an 8-byte payload, no file descriptor.
    public static func decodeBackEndReply(header: VhostUserHeader, payload: some Collection<UInt8>, fileDescriptorCount: Int,
                                          answering request: VhostUserBackEndRequest) throws(VhostUserProtocolError) -> VhostUserAck {
        let raw = request.rawValue
        let bytes = try checkedReply(header, payload, fileDescriptorCount: fileDescriptorCount, request: raw)
        guard bytes.count == 8 else { throw .wrongPayloadSize(request: raw, expected: 8, actual: bytes.count) }
        var r = VhostUserReader(bytes)
        return VhostUserAck(status: r.u64())
    }

    // MARK: Front-end side

    /// Decodes a request read from the back-end channel, as a front-end: valid header without
    /// REPLY, a known number, the exact payload (32 bytes for IOTLB, 0 for CONFIG_CHANGE), an
    /// IOTLB type the back-end may send, and no file descriptor (VRING_HOST_NOTIFIER, which is
    /// not implemented, may carry one).
    public static func decodeBackEndMessage(header: VhostUserHeader, payload: some Collection<UInt8>,
                                            fileDescriptorCount: Int) throws(VhostUserProtocolError) -> VhostUserBackEndMessage {
        try header.validate()
        guard !header.isReply else { throw .replyFlagOnRequest(request: header.request) }
        let bytes = try checkedPayload(header, payload)
        guard let request = VhostUserBackEndRequest(rawValue: header.request) else { throw .unknownBackEndRequest(header.request) }
        let message: VhostUserBackEndMessage
        let fileDescriptors: ClosedRange<Int>
        switch request {
        case .iotlbMessage:
            guard bytes.count == VhostUserIOTLBMessage.byteCount else {
                throw .wrongPayloadSize(request: header.request, expected: VhostUserIOTLBMessage.byteCount, actual: bytes.count)
            }
            message = .iotlb(try VhostUserIOTLBMessage.decode(bytes, fromFrontEnd: false))
            fileDescriptors = 0...0
        case .configChange:
            guard bytes.isEmpty else { throw .wrongPayloadSize(request: header.request, expected: 0, actual: bytes.count) }
            message = .configChange
            fileDescriptors = 0...0
        case .vringHostNotifier:
            message = .unsupported(request, payload: bytes)
            fileDescriptors = 0...1
        }
        guard fileDescriptors.contains(fileDescriptorCount) else {
            throw .wrongFileDescriptorCount(request: header.request, expected: fileDescriptors, actual: fileDescriptorCount)
        }
        return message
    }

    /// Header and payload of the front-end's REPLY_ACK to a back-end channel request.
    public static func encodeBackEndReply(_ ack: VhostUserAck, answering request: VhostUserBackEndRequest) -> [UInt8] {
        var w = VhostUserWriter(capacity: VhostUserHeader.byteCount + 8)
        VhostUserHeader.reply(request.rawValue, payloadSize: 8).append(to: &w)
        w.u64(ack.status)
        return w.bytes
    }
}
