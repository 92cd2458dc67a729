import Testing
import VirtioCore
import VirtioGrants
import VhostUser

@Suite("vhost-user codec: round trips", .tags(.vhostUser))
struct VhostUserRoundTripTests {
    @Test("GHT-VU-07, GHT-VU-08: every request encodes and decodes back to itself, with its descriptor count")
    func everyRequest() throws {
        let covered = Set(VU.samples.map(\.request))
        #expect(covered == Set(VhostUserRequest.allCases), "a sample for every request number")
        for message in VU.samples {
            for needReply in [false, true] {
                let bytes = try VhostUserCodec.encode(message, needReply: needReply)
                let (header, payload) = try VU.split(bytes)
                #expect(header.request == message.request.rawValue && header.needsReply == needReply && !header.isReply)
                #expect(Int(header.payloadSize) == payload.count)
                let decoded = try VhostUserCodec.decode(header: header, payload: payload, fileDescriptorCount: message.fileDescriptorCount)
                #expect(decoded == message, "\(message)")
            }
        }
    }

    @Test("GHT-VU-08: the descriptor count of each request")
    func descriptorCounts() {
        #expect(VhostUserMessage.setMemoryTable(VhostUserMemoryTable(regions: [VU.region0, VU.region1])).fileDescriptorCount == 2)
        #expect(VhostUserMessage.setVringKick(VhostUserVringFile(index: 0)).fileDescriptorCount == 1)
        #expect(VhostUserMessage.setVringErr(VhostUserVringFile(index: 0, hasFileDescriptor: false)).fileDescriptorCount == 0)
        #expect(VhostUserMessage.addMemoryRegion(VU.region0).fileDescriptorCount == 1)
        #expect(VhostUserMessage.removeMemoryRegion(VU.region0).fileDescriptorCount == 0)
        #expect(VhostUserMessage.setBackEndRequestFD.fileDescriptorCount == 1)
        #expect(VhostUserMessage.setGrantTable(VU.grantTable).fileDescriptorCount == 1)
        #expect(VhostUserMessage.unsupported(.setLogFD, payload: []).fileDescriptorCount == 1)
        #expect(VhostUserMessage.revokeGrants(VhostUserGrantRange(first: GrantReference(9), count: 1)).fileDescriptorCount == 0)
    }

    @Test("GHT-VU-18: every reply encodes and decodes back to itself against its request")
    func replies() throws {
        let state = VhostUserVringState(index: 3, num: 0)
        let pairs: [(VhostUserMessage, VhostUserReply)] = [
            (.getFeatures, .features([.version1, .accessPlatform, .vhostUserProtocolFeatures])),
            (.getProtocolFeatures, .protocolFeatures([.multiQueue, .replyAck, .grantTable])),
            (.getQueueNum, .queueCount(4)),
            (.getMaxMemorySlots, .memorySlotCount(509)),
            (.getStatus, .status([.acknowledge, .driver])),
            (.getVringBase(state), .vringBase(VhostUserVringState(index: 3, num: 0x1234))),
            (.getConfig(.request(offset: 4, size: 3)), .config(VhostUserConfig(offset: 4, data: [7, 8, 9]))),
            (.getConfig(.request(offset: 4, size: 3)), .configUnavailable),
            (.iotlb(.invalidate(iova: 0, size: 0x1000)), .ack(.iotlbMessage, .success)),
            (.revokeGrants(VhostUserGrantRange(first: GrantReference(8), count: 2)), .ack(.revokeGrants, .success)),
            (.setGrantTable(VU.grantTable), .ack(.setGrantTable, .failure(22))),
            (.setVringNum(state), .ack(.setVringNum, .success)),
            (.setMemoryTable(VhostUserMemoryTable(regions: [VU.region0])), .ack(.setMemoryTable, .failure())),
        ]
        for (request, reply) in pairs {
            #expect(reply.request == request.request)
            let (header, payload) = try VU.split(try VhostUserCodec.encodeReply(reply))
            #expect(header.isReply && !header.needsReply)
            #expect(try VhostUserCodec.decodeReply(header: header, payload: payload, fileDescriptorCount: 0, answering: request) == reply)
        }
        #expect(VhostUserAck.failure(0).status == 1 && !VhostUserAck.failure(0).isSuccess && VhostUserAck.success.isSuccess)
    }

    @Test("GHT-VU-14, GHT-VU-18: back-end channel: IOTLB miss and config change round trip, and their acks")
    func backendChannel() throws {
        let miss = try VhostUserCodec.encodeIOTLBMiss(iova: 0x7000, permission: .writeOnly, needReply: true)
        let (header, payload) = try VU.split(miss)
        #expect(header.needsReply)
        #expect(try VhostUserCodec.decodeBackEndMessage(header: header, payload: payload, fileDescriptorCount: 0)
            == .iotlb(.miss(iova: 0x7000, permission: .writeOnly)))
        for message: VhostUserBackEndMessage in [.configChange, .iotlb(.accessFail(iova: 0x9000, permission: .readOnly)),
                                                 .unsupported(.vringHostNotifier, payload: Array(repeating: 1, count: 24))] {
            let (h, p) = try VU.split(try VhostUserCodec.encode(message))
            #expect(try VhostUserCodec.decodeBackEndMessage(header: h, payload: p, fileDescriptorCount: 0) == message)
        }
        for ack in [VhostUserAck.success, .failure(5)] {
            let (h, p) = try VU.split(VhostUserCodec.encodeBackEndReply(ack, answering: .iotlbMessage))
            #expect(try VhostUserCodec.decodeBackEndReply(header: h, payload: p, fileDescriptorCount: 0, answering: .iotlbMessage) == ack)
        }
    }

    @Test("GHT-VU-14: an INVALIDATE ignores perm, uaddr and padding; MISS ignores size and uaddr")
    func iotlbNormalisation() throws {
        // QEMU's vhost_backend_invalidate_device_iotlb leaves perm and uaddr uninitialised.
        let garbage = VU.iotlbBytes(iova: 0x4000, size: 0x1000, uaddr: 0xDEAD_BEEF, perm: 0xC3, type: 3, padding: 0xCC)
        #expect(try VU.decode(request: 22, payload: garbage) == .iotlb(.invalidate(iova: 0x4000, size: 0x1000)))
        // An end past 2^64 is passed on for the IOVA space to clamp.
        let toTheEnd = VU.iotlbBytes(iova: 0xFFFF_0000_0000_0000, size: 0xFFFF_FFFF_FFFF_FFFF, uaddr: 0, perm: 0, type: 3)
        #expect(try VU.decode(request: 22, payload: toTheEnd) == .iotlb(.invalidate(iova: 0xFFFF_0000_0000_0000, size: 0xFFFF_FFFF_FFFF_FFFF)))
        let miss = VU.iotlbBytes(iova: 0x5000, size: 77, uaddr: 88, perm: 3, type: 1, padding: 0xFF)
        let header = VhostUserHeader.request(1, payloadSize: 32)
        #expect(try VhostUserCodec.decodeBackEndMessage(header: header, payload: miss, fileDescriptorCount: 0)
            == .iotlb(.miss(iova: 0x5000, permission: .readWrite)))
    }

    @Test("GHT-VU-17: unsupported requests decode to .unsupported with their payload untouched")
    func unsupported() throws {
        for request in VhostUserRequest.allCases where !request.isSupported {
            let payload: [UInt8] = [1, 2, 3]
            let fds = request.unsupportedDescriptorsForTest
            #expect(try VU.decode(request: request.rawValue, payload: payload, fds: fds) == .unsupported(request, payload: payload))
        }
        #expect(VhostUserRequest.allCases.filter { !$0.isSupported }.count == 10)
        #expect(VhostUserRequest.revokeGrants.alwaysReplies && VhostUserRequest.iotlbMessage.alwaysReplies)
        #expect(!VhostUserRequest.setGrantTable.alwaysReplies && !VhostUserRequest.setVringKick.alwaysReplies)
    }
}

extension VhostUserRequest {
    /// The descriptor count a well-formed unsupported request carries (vhost-user.rst).
    var unsupportedDescriptorsForTest: Int {
        switch self {
        case .setLogFD, .gpuSetSocket: return 1
        default: return 0
        }
    }
}
