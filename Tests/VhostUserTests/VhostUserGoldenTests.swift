import Testing
import VirtioCore
import VirtioGrants
import VhostUser

/// Byte-exact encodings, written out by hand from vhost-user.rst and Spec/vhost-user.md.
@Suite("vhost-user codec: golden encodings", .tags(.vhostUser))
struct VhostUserGoldenTests {
    @Test("GHT-VU-01: the header is le32 request, le32 flags, le32 size")
    func header() throws {
        #expect(try VhostUserCodec.encode(.getFeatures) == [0x01, 0, 0, 0, 0x01, 0, 0, 0, 0, 0, 0, 0])
        #expect(try VhostUserCodec.encode(.setOwner, needReply: true) == [0x03, 0, 0, 0, 0x09, 0, 0, 0, 0, 0, 0, 0])
        #expect(VhostUserHeader.reply(0x1234_5678, payloadSize: 0x0102).encoded()
            == [0x78, 0x56, 0x34, 0x12, 0x05, 0, 0, 0, 0x02, 0x01, 0, 0])
        let h = try VhostUserHeader.decode([0x0A, 0x04, 0, 0, 0x09, 0, 0, 0, 0x28, 0, 0, 0, 0xEE])
        #expect(h == VhostUserHeader(request: 1034, flags: [.version1, .needReply], payloadSize: 40))
        #expect(h.needsReply && !h.isReply && h.flags.version == 1)
        #expect(VhostUserHeader.byteCount == 12 && VhostUserHeader.maximumPayloadSize == 4096)
    }

    @Test("GHT-VU-01: u64 payloads (features, protocol features, status) are little-endian")
    func u64Payloads() throws {
        let features: VirtioFeatures = [.version1, .vhostUserProtocolFeatures]
        #expect(try VhostUserCodec.encode(.setFeatures(features))
            == [0x02, 0, 0, 0, 0x01, 0, 0, 0, 0x08, 0, 0, 0] + [0, 0, 0, 0x40, 0x01, 0, 0, 0])
        #expect(VhostUserMessage.setProtocolFeatures([.replyAck, .grantTable]).encodedPayload() == [0x08, 0, 0, 0, 0, 0, 0x01, 0])
        #expect(VhostUserMessage.setStatus([.acknowledge, .driver, .driverOK, .featuresOK]).encodedPayload() == [0x0F, 0, 0, 0, 0, 0, 0, 0])
        #expect(VhostUserProtocolFeatures.grantTable.rawValue == 1 << 48)
        #expect(VhostUserProtocolFeatures.status.rawValue == 1 << 16 && VhostUserProtocolFeatures.replyAck.rawValue == 1 << 3)
        #expect(try VU.decode(request: 2, payload: [0, 0, 0, 0x40, 0x01, 0, 0, 0]) == .setFeatures(features))
    }

    @Test("GHT-VU-01: vring state is le32 index, le32 num")
    func vringState() throws {
        let bytes: [UInt8] = [0x01, 0, 0, 0, 0x00, 0x01, 0, 0]
        #expect(VhostUserVringState(index: 1, num: 256).encoded() == bytes)
        #expect(try VhostUserCodec.encode(.setVringNum(VhostUserVringState(index: 1, num: 256)))
            == [0x08, 0, 0, 0, 0x01, 0, 0, 0, 0x08, 0, 0, 0] + bytes)
        #expect(try VU.decode(request: 10, payload: bytes) == .setVringBase(VhostUserVringState(index: 1, num: 256)))
    }

    @Test("GHT-VU-01: vring address is index, flags, descriptor, used, available, log")
    func vringAddress() throws {
        let address = VhostUserVringAddress(index: 2, flags: .log, descriptor: 0x1000, used: 0x2000, available: 0x3000, log: 0x4000)
        let bytes: [UInt8] = [0x02, 0, 0, 0, 0x01, 0, 0, 0,
                              0x00, 0x10, 0, 0, 0, 0, 0, 0,
                              0x00, 0x20, 0, 0, 0, 0, 0, 0,
                              0x00, 0x30, 0, 0, 0, 0, 0, 0,
                              0x00, 0x40, 0, 0, 0, 0, 0, 0]
        #expect(address.encoded() == bytes)
        #expect(try VU.decode(request: 9, payload: bytes) == .setVringAddress(address))
    }

    @Test("GHT-VU-01, GHT-VU-11: vring file is index in bits 0-7, NOFD in bit 8")
    func vringFile() throws {
        #expect(VhostUserVringFile(index: 3).encoded() == [0x03, 0, 0, 0, 0, 0, 0, 0])
        #expect(VhostUserVringFile(index: 5, hasFileDescriptor: false).encoded() == [0x05, 0x01, 0, 0, 0, 0, 0, 0])
        #expect(try VU.decode(request: 13, payload: [0x05, 0x01, 0, 0, 0, 0, 0, 0], fds: 0)
            == .setVringCall(VhostUserVringFile(index: 5, hasFileDescriptor: false)))
        #expect(try VU.decode(request: 12, payload: [0xFF, 0, 0, 0, 0, 0, 0, 0], fds: 1) == .setVringKick(VhostUserVringFile(index: 255)))
    }

    @Test("GHT-VU-01, GHT-VU-09: memory table is nregions, padding, then exactly nregions regions")
    func memoryTable() throws {
        let r0: [UInt8] = [0, 0, 0, 0, 0, 0, 0, 0,                 // guest_phys_addr 0
                           0, 0, 0, 0x80, 0, 0, 0, 0,              // memory_size 0x8000_0000
                           0, 0, 0, 0, 0, 0x7F, 0, 0,              // userspace_addr 0x7F00_0000_0000
                           0, 0, 0, 0, 0, 0, 0, 0]                 // mmap_offset 0
        let r1: [UInt8] = [0, 0, 0, 0, 0x01, 0, 0, 0,
                           0, 0, 0, 0x40, 0, 0, 0, 0,
                           0, 0, 0, 0, 0x80, 0x7F, 0, 0,
                           0, 0, 0, 0x80, 0, 0, 0, 0]
        #expect(VU.region0.encoded() == r0)
        let table = VhostUserMemoryTable(regions: [VU.region0, VU.region1])
        let payload: [UInt8] = [0x02, 0, 0, 0, 0, 0, 0, 0] + r0 + r1
        #expect(table.encoded() == payload)
        #expect(payload.count == VhostUserMemoryTable.byteCount(regions: 2))
        #expect(try VU.decode(request: 5, payload: payload, fds: 2) == .setMemoryTable(table))
        // The padding word is ignored on decode.
        var padded = payload
        padded[4] = 0xEE
        #expect(try VU.decode(request: 5, payload: padded, fds: 2) == .setMemoryTable(table))
    }

    @Test("GHT-VU-01: ADD_MEM_REG and REM_MEM_REG are 8 bytes of padding and one region")
    func singleRegion() throws {
        let payload = [UInt8](repeating: 0, count: 8) + VU.region1.encoded()
        #expect(VhostUserMessage.addMemoryRegion(VU.region1).encodedPayload() == payload)
        #expect(try VU.decode(request: 37, payload: payload, fds: 1) == .addMemoryRegion(VU.region1))
        #expect(try VU.decode(request: 38, payload: [0xAB] + payload.dropFirst(), fds: 0) == .removeMemoryRegion(VU.region1))
    }

    @Test("GHT-VU-01, GHT-VU-13: config is le32 offset, le32 size, le32 flags, then size bytes")
    func config() throws {
        let config = VhostUserConfig(offset: 4, flags: .liveMigration, data: [0xAA, 0xBB])
        let bytes: [UInt8] = [0x04, 0, 0, 0, 0x02, 0, 0, 0, 0x01, 0, 0, 0, 0xAA, 0xBB]
        #expect(config.encoded() == bytes)
        #expect(try VU.decode(request: 25, payload: bytes) == .setConfig(config))
        #expect(VhostUserConfig.request(offset: 0, size: 3).encoded() == [0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    }

    @Test("GHT-VU-01, GHT-VU-14: IOTLB message is iova, size, uaddr, perm, type, padded to 32 bytes")
    func iotlb() throws {
        let message = VhostUserIOTLBMessage.update(iova: 0x1000, size: 0x2000, userAddress: 0x7000_0000, permission: .readWrite)
        let bytes: [UInt8] = [0x00, 0x10, 0, 0, 0, 0, 0, 0,
                              0x00, 0x20, 0, 0, 0, 0, 0, 0,
                              0x00, 0x00, 0x00, 0x70, 0, 0, 0, 0,
                              0x03, 0x02, 0, 0, 0, 0, 0, 0]
        #expect(message.encoded() == bytes)
        #expect(VhostUserIOTLBMessage.byteCount == 32)
        #expect(try VU.decode(request: 22, payload: bytes) == .iotlb(message))
        #expect(try VhostUserCodec.encodeIOTLBMiss(iova: 0xABC000, permission: .readOnly)
            == [0x01, 0, 0, 0, 0x01, 0, 0, 0, 0x20, 0, 0, 0] + VU.iotlbBytes(iova: 0xABC000, size: 0, uaddr: 0, perm: 1, type: 1))
    }

    @Test("GHT-VU-15, GHT-VUG-01: SET_GRANT_TABLE is request 1024 with a 40-byte payload")
    func grantTable() throws {
        let bytes: [UInt8] = [0x01, 0x00, 0x00, 0x00, 0, 0, 0, 0,     // granter 1, grantee 0, flags 0
                              0x00, 0x20, 0, 0, 0, 0, 0, 0,           // table size 0x2000
                              0x00, 0x10, 0, 0, 0, 0, 0, 0,           // table offset 0x1000
                              0x00, 0x00, 0x00, 0x80, 0, 0, 0, 0,     // frames at 0x8000_0000
                              0x00, 0x00, 0x04, 0x00, 0, 0, 0, 0]     // 0x4_0000 frames
        #expect(VU.grantTable.encoded() == bytes)
        #expect(VhostUserRequest.setGrantTable.rawValue == 1024)
        #expect(try VhostUserCodec.encode(.setGrantTable(VU.grantTable), needReply: true)
            == [0x00, 0x04, 0, 0, 0x09, 0, 0, 0, 0x28, 0, 0, 0] + bytes)
        #expect(try VU.decode(request: 1024, payload: bytes, fds: 1) == .setGrantTable(VU.grantTable))
        #expect(VU.grantTable.entryCount == 0x400)
    }

    @Test("GHT-VU-16, GHT-VUG-01: REVOKE_GRANTS is request 1025 with le32 first, le32 count")
    func grantRange() throws {
        let range = VhostUserGrantRange(first: GrantReference(16), count: 4)
        #expect(range.encoded() == [0x10, 0, 0, 0, 0x04, 0, 0, 0])
        #expect(try VhostUserCodec.encode(.revokeGrants(range)) == [0x01, 0x04, 0, 0, 0x01, 0, 0, 0, 0x08, 0, 0, 0, 0x10, 0, 0, 0, 0x04, 0, 0, 0])
        #expect(range.contains(GrantReference(19)) && !range.contains(GrantReference(20)) && !range.contains(GrantReference(15)))
    }

    @Test("GHT-VU-18: replies carry REPLY; an ack is a u64, 0 for success")
    func replies() throws {
        #expect(try VhostUserCodec.encodeReply(.ack(.iotlbMessage, .success))
            == [0x16, 0, 0, 0, 0x05, 0, 0, 0, 0x08, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
        #expect(try VhostUserCodec.encodeReply(.features([.version1]))
            == [0x01, 0, 0, 0, 0x05, 0, 0, 0, 0x08, 0, 0, 0, 0, 0, 0, 0, 0x01, 0, 0, 0])
        #expect(try VhostUserCodec.encodeReply(.configUnavailable) == [0x18, 0, 0, 0, 0x05, 0, 0, 0, 0, 0, 0, 0])
        #expect(VhostUserCodec.encodeBackEndReply(.failure(), answering: .iotlbMessage)
            == [0x01, 0, 0, 0, 0x05, 0, 0, 0, 0x08, 0, 0, 0, 0x01, 0, 0, 0, 0, 0, 0, 0])
    }
}
