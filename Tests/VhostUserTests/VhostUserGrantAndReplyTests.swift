import Testing
import VirtioCore
import VirtioGrants
import VhostUser

/// The grant-table extension's wire rules, and the rules replies are held to.
@Suite("vhost-user codec: grant extension and replies", .tags(.vhostUser))
struct VhostUserGrantAndReplyTests {
    @Test("GHT-VU-15: SET_GRANT_TABLE refuses each bad field")
    func badGrantTable() {
        let cases: [([UInt8], VhostUserProtocolError.GrantTableDefect)] = [
            (VU.grantTableBytes(flags: 1), .flags(1)),
            (VU.grantTableBytes(granter: 3, grantee: 3), .sameDomain(DomainID(3))),
            (VU.grantTableBytes(granter: 0x7FF0), .reservedDomain(DomainID(0x7FF0))),
            (VU.grantTableBytes(grantee: 0xFFFF), .reservedDomain(DomainID(0xFFFF))),
            (VU.grantTableBytes(size: 0), .tableSize(0)),
            (VU.grantTableBytes(size: 12), .tableSize(12)),
            (VU.grantTableBytes(size: (1 << 35) + 8), .tableSize((1 << 35) + 8)),
            (VU.grantTableBytes(offset: 0x800), .tableOffset(0x800)),
            (VU.grantTableBytes(offset: 0x7FFF_FFFF_FFFF_F000), .tableOffset(0x7FFF_FFFF_FFFF_F000)),
            (VU.grantTableBytes(gpa: 0x8000_0010), .framesAddress(0x8000_0010)),
            (VU.grantTableBytes(count: 0), .frameCount(0)),
            (VU.grantTableBytes(gpa: 0, count: (1 << 32) + 1), .frameCount((1 << 32) + 1)),
            (VU.grantTableBytes(gpa: 0xFFFF_FFFF_FFFF_E000, count: 3), .frameCount(3)),
        ]
        for (payload, defect) in cases {
            #expect(throws: VhostUserProtocolError.invalidGrantTable(defect)) { try VU.decode(request: 1024, payload: payload, fds: 1) }
        }
        // The limits themselves are accepted.
        for payload in [VU.grantTableBytes(size: 1 << 35), VU.grantTableBytes(gpa: 0, count: 1 << 32),
                        VU.grantTableBytes(gpa: 0xFFFF_FFFF_FFFF_E000, count: 2), VU.grantTableBytes(size: 8, offset: 0)] {
            #expect(throws: Never.self) { try VU.decode(request: 1024, payload: payload, fds: 1) }
        }
        #expect(throws: VhostUserProtocolError.wrongPayloadSize(request: 1024, expected: 40, actual: 39)) {
            try VU.decode(request: 1024, payload: Array(VU.grantTableBytes().dropLast()), fds: 1)
        }
        #expect(throws: VhostUserProtocolError.wrongFileDescriptorCount(request: 1024, expected: 1...1, actual: 0)) {
            try VU.decode(request: 1024, payload: VU.grantTableBytes(), fds: 0)
        }
        var same = VU.grantTable
        same.grantee = same.granter
        #expect(throws: VhostUserProtocolError.invalidGrantTable(.sameDomain(DomainID(1)))) { try VhostUserCodec.encode(.setGrantTable(same)) }
    }

    @Test("GHT-VU-16: REVOKE_GRANTS needs a count of at least 1 and no overflow, and no descriptor")
    func badGrantRange() {
        #expect(throws: VhostUserProtocolError.invalidGrantRange(first: 8, count: 0)) { try VU.decode(request: 1025, payload: VU.le32(8) + VU.le32(0)) }
        #expect(throws: VhostUserProtocolError.invalidGrantRange(first: 0xFFFF_FFF0, count: 0x11)) {
            try VU.decode(request: 1025, payload: VU.le32(0xFFFF_FFF0) + VU.le32(0x11))
        }
        #expect(throws: VhostUserProtocolError.invalidGrantRange(first: 2, count: 0xFFFF_FFFF)) {
            try VU.decode(request: 1025, payload: VU.le32(2) + VU.le32(0xFFFF_FFFF))
        }
        #expect(throws: Never.self) { try VU.decode(request: 1025, payload: VU.le32(1) + VU.le32(0xFFFF_FFFF)) }
        #expect(throws: Never.self) { try VU.decode(request: 1025, payload: VU.le32(0xFFFF_FFF0) + VU.le32(0x10)) }
        #expect(throws: Never.self) { try VU.decode(request: 1025, payload: VU.le32(0) + VU.le32(0xFFFF_FFFF)) }
        #expect(throws: VhostUserProtocolError.wrongFileDescriptorCount(request: 1025, expected: 0...0, actual: 1)) {
            try VU.decode(request: 1025, payload: VU.le32(8) + VU.le32(1), fds: 1)
        }
        #expect(throws: VhostUserProtocolError.wrongPayloadSize(request: 1025, expected: 8, actual: 12)) {
            try VU.decode(request: 1025, payload: VU.le32(8) + VU.le32(1) + VU.le32(0))
        }
        #expect(throws: VhostUserProtocolError.invalidGrantRange(first: 9, count: 0)) {
            try VhostUserCodec.encode(.revokeGrants(VhostUserGrantRange(first: GrantReference(9), count: 0)))
        }
    }

    @Test("GHT-VU-18: a reply must carry REPLY, answer the request, and have its exact size and no descriptor")
    func badReplies() {
        let features = VU.le64(1 << 32)
        func reply(_ request: UInt32, _ payload: [UInt8], flags: VhostUserHeaderFlags = [.version1, .reply], fds: Int = 0,
                   to message: VhostUserMessage) throws(VhostUserProtocolError) -> VhostUserReply {
            let header = VhostUserHeader(request: request, flags: flags, payloadSize: UInt32(payload.count))
            return try VhostUserCodec.decodeReply(header: header, payload: payload, fileDescriptorCount: fds, answering: message)
        }
        #expect(throws: VhostUserProtocolError.missingReplyFlag(request: 1)) { try reply(1, features, flags: .version1, to: .getFeatures) }
        #expect(throws: VhostUserProtocolError.replyMismatch(expected: 1, actual: 15)) { try reply(15, features, to: .getFeatures) }
        #expect(throws: VhostUserProtocolError.wrongPayloadSize(request: 1, expected: 8, actual: 4)) { try reply(1, [0, 0, 0, 0], to: .getFeatures) }
        #expect(throws: VhostUserProtocolError.wrongFileDescriptorCount(request: 1, expected: 0...0, actual: 1)) {
            try reply(1, features, fds: 1, to: .getFeatures)
        }
        #expect(throws: VhostUserProtocolError.unsupportedVersion(2)) { try reply(1, features, flags: [.reply, VhostUserHeaderFlags(rawValue: 2)], to: .getFeatures) }
        #expect(throws: VhostUserProtocolError.reservedBitsSet(request: 40, value: 0x1FF)) { try reply(40, VU.le64(0x1FF), to: .getStatus) }
        let base = VhostUserMessage.getVringBase(VhostUserVringState(index: 2, num: 0))
        #expect(throws: VhostUserProtocolError.replyFieldMismatch(request: 11, expected: 2, actual: 3)) {
            try reply(11, VU.le32(3) + VU.le32(9), to: base)
        }
        let getConfig = VhostUserMessage.getConfig(.request(offset: 8, size: 4))
        #expect(throws: VhostUserProtocolError.wrongPayloadSize(request: 24, expected: 16, actual: 17)) {
            try reply(24, VhostUserConfig(offset: 8, data: [1, 2, 3, 4, 5]).encoded(), to: getConfig)
        }
        #expect(throws: VhostUserProtocolError.replyFieldMismatch(request: 24, expected: 8, actual: 0)) {
            try reply(24, VhostUserConfig(offset: 0, data: [1, 2, 3, 4]).encoded(), to: getConfig)
        }
        #expect(throws: VhostUserProtocolError.wrongPayloadSize(request: 9, expected: 8, actual: 0)) {
            try reply(9, [], to: .setVringAddress(VhostUserVringAddress(index: 0, descriptor: 0, used: 0, available: 0)))
        }
        #expect(throws: VhostUserProtocolError.unsupportedReply(request: 28)) { try reply(28, VU.le64(0), to: .unsupported(.postcopyAdvise, payload: [])) }
        // Back-end channel acks.
        let ackHeader = VhostUserHeader.request(1, payloadSize: 8)
        #expect(throws: VhostUserProtocolError.missingReplyFlag(request: 1)) {
            try VhostUserCodec.decodeBackEndReply(header: ackHeader, payload: VU.le64(0), fileDescriptorCount: 0, answering: .iotlbMessage)
        }
        #expect(throws: VhostUserProtocolError.replyMismatch(expected: 1, actual: 2)) {
            try VhostUserCodec.decodeBackEndReply(header: .reply(2, payloadSize: 8), payload: VU.le64(0), fileDescriptorCount: 0, answering: .iotlbMessage)
        }
        #expect(throws: VhostUserProtocolError.wrongPayloadSize(request: 2, expected: 8, actual: 0)) {
            try VhostUserCodec.decodeBackEndReply(header: .reply(2, payloadSize: 0), payload: [UInt8](), fileDescriptorCount: 0, answering: .configChange)
        }
        #expect(throws: VhostUserProtocolError.invalidConfigRange(offset: 0, size: 300)) {
            try VhostUserCodec.encodeReply(.config(VhostUserConfig(offset: 0, data: Array(repeating: 0, count: 300))))
        }
    }

    @Test("GHT-VU-17: the back-end channel's unimplemented request decodes with at most one descriptor")
    func backendUnsupported() {
        let header = VhostUserHeader.request(3, payloadSize: 24)
        let payload = [UInt8](repeating: 0, count: 24)
        #expect(throws: Never.self) { try VhostUserCodec.decodeBackEndMessage(header: header, payload: payload, fileDescriptorCount: 1) }
        #expect(throws: VhostUserProtocolError.wrongFileDescriptorCount(request: 3, expected: 0...1, actual: 2)) {
            try VhostUserCodec.decodeBackEndMessage(header: header, payload: payload, fileDescriptorCount: 2)
        }
        #expect(throws: VhostUserProtocolError.wrongPayloadSize(request: 2, expected: 0, actual: 8)) {
            try VhostUserCodec.decodeBackEndMessage(header: .request(2, payloadSize: 8), payload: VU.le64(0), fileDescriptorCount: 0)
        }
    }
}
