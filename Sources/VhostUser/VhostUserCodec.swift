import VirtioCore

/// Encoding and decoding of vhost-user messages (vhost-user.rst "Message Specification"), with
/// the validation rules of Spec/vhost-user.md (GHT-VU-nn).
///
/// The codec is pure: it reads and writes byte arrays and counts file descriptors, but never
/// touches one. Decoding hostile input never traps and allocates at most one payload of
/// ``VhostUserHeader/maximumPayloadSize`` bytes; every refusal is a ``VhostUserProtocolError``.
public enum VhostUserCodec {
    // MARK: Front-end requests, back-end side

    /// Decodes and validates a front-end request whose header and payload have arrived,
    /// together with the number of file descriptors that came with it.
    ///
    /// Checks, in order: the header (GHT-VU-01…04), that REPLY is clear (GHT-VU-05), that the
    /// payload is as long as the header says, the request number (GHT-VU-06), the payload
    /// size the request requires (GHT-VU-07), its fields (GHT-VU-09…16), and the file
    /// descriptor count (GHT-VU-08).
    public static func decode(header: VhostUserHeader, payload: some Collection<UInt8>,
                              fileDescriptorCount: Int) throws(VhostUserProtocolError) -> VhostUserMessage {
        try header.validate()
        guard !header.isReply else { throw .replyFlagOnRequest(request: header.request) }
        let bytes = try checkedPayload(header, payload)
        guard let request = VhostUserRequest(rawValue: header.request) else { throw .unknownRequest(header.request) }
        let message = try decodePayload(request, bytes)
        let allowed = request.isSupported ? 0...0 : request.unsupportedFileDescriptors
        let expected: ClosedRange<Int>
        switch message {
        case .removeMemoryRegion: expected = 0...1   // vhost-user.rst: "MAY accept ... one file descriptor"
        case .unsupported: expected = allowed
        default: expected = message.fileDescriptorCount...message.fileDescriptorCount
        }
        guard expected.contains(fileDescriptorCount) else {
            throw .wrongFileDescriptorCount(request: header.request, expected: expected, actual: fileDescriptorCount)
        }
        return message
    }

    /// Decodes a frame from ``VhostUserFramer``.
    public static func decode(_ frame: VhostUserFrame) throws(VhostUserProtocolError) -> VhostUserMessage {
        try decode(header: frame.header, payload: frame.payload, fileDescriptorCount: frame.fileDescriptors.count)
    }

    /// The payload as an array, once its length matches the header (which bounds it).
    package static func checkedPayload(_ header: VhostUserHeader, _ payload: some Collection<UInt8>) throws(VhostUserProtocolError) -> [UInt8] {
        let count = payload.count
        guard count == Int(header.payloadSize) else { throw .payloadLengthMismatch(declared: header.payloadSize, actual: count) }
        return Array(payload)
    }

    private static func decodePayload(_ request: VhostUserRequest, _ bytes: [UInt8]) throws(VhostUserProtocolError) -> VhostUserMessage {
        let raw = request.rawValue
        func size(_ expected: Int) throws(VhostUserProtocolError) {
            guard bytes.count == expected else { throw .wrongPayloadSize(request: raw, expected: expected, actual: bytes.count) }
        }
        func u64() throws(VhostUserProtocolError) -> UInt64 {
            try size(8)
            var r = VhostUserReader(bytes)
            return r.u64()
        }
        func state() throws(VhostUserProtocolError) -> VhostUserVringState {
            try size(VhostUserVringState.byteCount)
            var r = VhostUserReader(bytes)
            let s = VhostUserVringState(from: &r)
            try validateState(s, for: request)
            return s
        }
        func file() throws(VhostUserProtocolError) -> VhostUserVringFile {
            try VhostUserVringFile.decode(u64(), request: raw)
        }
        switch request {
        case .getFeatures: try size(0); return .getFeatures
        case .setFeatures: return .setFeatures(VirtioFeatures(rawValue: try u64()))
        case .setOwner: try size(0); return .setOwner
        case .resetOwner: try size(0); return .resetOwner
        case .setMemoryTable: return .setMemoryTable(try VhostUserMemoryTable.decode(bytes, request: raw))
        case .setVringNum: return .setVringNum(try state())
        case .setVringAddress:
            try size(VhostUserVringAddress.byteCount)
            var r = VhostUserReader(bytes)
            let address = VhostUserVringAddress(from: &r)
            try address.validate()
            return .setVringAddress(address)
        case .setVringBase: return .setVringBase(try state())
        case .getVringBase: return .getVringBase(try state())
        case .setVringKick: return .setVringKick(try file())
        case .setVringCall: return .setVringCall(try file())
        case .setVringErr: return .setVringErr(try file())
        case .getProtocolFeatures: try size(0); return .getProtocolFeatures
        case .setProtocolFeatures: return .setProtocolFeatures(VhostUserProtocolFeatures(rawValue: try u64()))
        case .getQueueNum: try size(0); return .getQueueNum
        case .setVringEnable: return .setVringEnable(try state())
        case .setBackEndRequestFD: try size(0); return .setBackEndRequestFD
        case .iotlbMessage:
            try size(VhostUserIOTLBMessage.byteCount)
            return .iotlb(try VhostUserIOTLBMessage.decode(bytes, fromFrontEnd: true))
        case .setVringEndian: return .setVringEndian(try state())
        case .getConfig: return .getConfig(try VhostUserConfig.decode(bytes, request: raw))
        case .setConfig: return .setConfig(try VhostUserConfig.decode(bytes, request: raw))
        case .resetDevice: try size(0); return .resetDevice
        case .vringKick: return .vringKick(try state())
        case .getMaxMemorySlots: try size(0); return .getMaxMemorySlots
        case .addMemoryRegion:
            try size(VhostUserSingleRegion.byteCount)
            return .addMemoryRegion(try VhostUserSingleRegion.decode(bytes))
        case .removeMemoryRegion:
            try size(VhostUserSingleRegion.byteCount)
            return .removeMemoryRegion(try VhostUserSingleRegion.decode(bytes))
        case .setStatus:
            let value = try u64()
            guard value <= 0xFF else { throw .reservedBitsSet(request: raw, value: value) }
            return .setStatus(DeviceStatus(rawValue: UInt8(value)))
        case .getStatus: try size(0); return .getStatus
        case .setGrantTable:
            try size(VhostUserGrantTable.byteCount)
            return .setGrantTable(try VhostUserGrantTable.decode(bytes))
        case .revokeGrants:
            try size(VhostUserGrantRange.byteCount)
            return .revokeGrants(try VhostUserGrantRange.decode(bytes))
        case .setLogBase, .setLogFD, .sendRARP, .netSetMTU, .createCryptoSession, .closeCryptoSession,
             .postcopyAdvise, .postcopyListen, .postcopyEnd, .gpuSetSocket:
            return .unsupported(request, payload: bytes)
        case .getInflightFD:
            try size(VhostUserInflight.byteCount)
            let inflight = VhostUserInflight.decode(bytes)
            try inflight.validateGeometry()
            return .getInflightFD(inflight)
        case .setInflightFD:
            try size(VhostUserInflight.byteCount)
            let inflight = VhostUserInflight.decode(bytes)
            try inflight.validateArea()
            return .setInflightFD(inflight)
        }
    }

    /// GHT-VU-12: the `num` values SET_VRING_ENABLE (0, 1), SET_VRING_ENDIAN (0, 1) and
    /// VRING_KICK (0) allow. Other states carry any `num`; the session checks them against
    /// the queue.
    package static func validateState(_ state: VhostUserVringState, for request: VhostUserRequest) throws(VhostUserProtocolError) {
        let limit: UInt32
        switch request {
        case .setVringEnable, .setVringEndian: limit = 1
        case .vringKick: limit = 0
        default: return
        }
        guard state.num <= limit else { throw .reservedBitsSet(request: request.rawValue, value: UInt64(state.num)) }
    }

    // MARK: Front-end requests, front-end side

    /// Validates `message` with the rules its decoder applies (GHT-VU-09…16), so that what a
    /// Swift front-end sends is what a back-end built on this codec accepts.
    public static func validate(_ message: VhostUserMessage) throws(VhostUserProtocolError) {
        switch message {
        case .setMemoryTable(let table): try table.validate()
        case .setVringAddress(let address): try address.validate()
        case .setVringEnable(let s), .setVringEndian(let s), .vringKick(let s): try validateState(s, for: message.request)
        case .iotlb(let iotlb): try iotlb.validate(fromFrontEnd: true)
        case .getConfig(let config), .setConfig(let config): try config.validate()
        case .addMemoryRegion(let region), .removeMemoryRegion(let region): try region.validate()
        case .setGrantTable(let table): try table.validate()
        case .revokeGrants(let range): try range.validate()
        case .getInflightFD(let inflight): try inflight.validateGeometry()
        case .setInflightFD(let inflight): try inflight.validateArea()
        default: break
        }
    }

    /// Header and payload of `message`, after ``validate(_:)``. The caller attaches
    /// ``VhostUserMessage/fileDescriptorCount`` descriptors to the first byte.
    public static func encode(_ message: VhostUserMessage, needReply: Bool = false) throws(VhostUserProtocolError) -> [UInt8] {
        try validate(message)
        return try frame(request: message.request.rawValue, payload: message.encodedPayload(), header: { .request($0, payloadSize: $1, needReply: needReply) })
    }

    /// Header + payload, refusing a payload above the maximum.
    package static func frame(request: UInt32, payload: [UInt8],
                      header: (UInt32, Int) -> VhostUserHeader) throws(VhostUserProtocolError) -> [UInt8] {
        guard payload.count <= VhostUserHeader.maximumPayloadSize else {
            throw .payloadTooLarge(size: UInt32(truncatingIfNeeded: payload.count), maximum: VhostUserHeader.maximumPayloadSize)
        }
        var w = VhostUserWriter(capacity: VhostUserHeader.byteCount + payload.count)
        header(request, payload.count).append(to: &w)
        w.raw(payload)
        return w.bytes
    }
}
