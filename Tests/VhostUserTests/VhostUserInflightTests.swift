import Testing
import VirtioCore
import VhostUser

@Suite("vhost-user codec: GET/SET_INFLIGHT_FD", .tags(.vhostUser))
struct VhostUserInflightTests {
    static func payload(size: UInt64, offset: UInt64, queues: UInt16, queueSize: UInt16) -> [UInt8] {
        VhostUserInflight(mmapSize: size, mmapOffset: offset, queueCount: queues, queueSize: queueSize).encoded()
    }

    @Test("GHT-INF-01: the in-flight payload is le64 mmap size, le64 mmap offset, le16 queues, le16 queue size, 4 bytes of padding")
    func layout() throws {
        let bytes = Self.payload(size: 0x1122, offset: 0x3344, queues: 2, queueSize: 128)
        #expect(bytes == [0x22, 0x11, 0, 0, 0, 0, 0, 0, 0x44, 0x33, 0, 0, 0, 0, 0, 0, 2, 0, 128, 0, 0, 0, 0, 0])
        #expect(try VU.decode(request: 32, payload: bytes, fds: 1)
            == .setInflightFD(VhostUserInflight(mmapSize: 0x1122, mmapOffset: 0x3344, queueCount: 2, queueSize: 128)))
        #expect(try VU.decode(request: 31, payload: Self.payload(size: 0, offset: 0, queues: 1, queueSize: 1), fds: 0)
            == .getInflightFD(VhostUserInflight(queueCount: 1, queueSize: 1)))
        #expect(VhostUserRequest.getInflightFD.isSupported && VhostUserRequest.setInflightFD.isSupported)
        #expect(VhostUserRequest.getInflightFD.alwaysReplies && !VhostUserRequest.setInflightFD.alwaysReplies)
    }

    @Test("GHT-INF-01: every malformed in-flight field is refused with its defect, in requests and in GET's reply")
    func malformed() throws {
        let cases: [(UInt32, [UInt8], Int, VhostUserProtocolError)] = [
            (31, Self.payload(size: 0, offset: 0, queues: 0, queueSize: 8), 0, .invalidInflight(.queueCount(0))),
            (31, Self.payload(size: 0, offset: 0, queues: 1, queueSize: 0), 0, .invalidInflight(.queueSize(0))),
            (31, Self.payload(size: 0, offset: 0, queues: 1, queueSize: 32769), 0, .invalidInflight(.queueSize(32769))),
            (31, Self.payload(size: 0, offset: 0, queues: 1, queueSize: 65535), 0, .invalidInflight(.queueSize(65535))),
            (32, Self.payload(size: 0, offset: 0, queues: 1, queueSize: 8), 1, .invalidInflight(.mmapSize(0))),
            (32, Self.payload(size: UInt64.max, offset: 0, queues: 1, queueSize: 8), 1, .invalidInflight(.mmapSize(UInt64.max))),
            (32, Self.payload(size: 4096, offset: UInt64(Int64.max) - 100, queues: 1, queueSize: 8), 1,
             .invalidInflight(.mmapOffset(UInt64(Int64.max) - 100))),
            (32, Self.payload(size: 4096, offset: 0, queues: 1, queueSize: 8), 0,
             .wrongFileDescriptorCount(request: 32, expected: 1...1, actual: 0)),
            (31, Self.payload(size: 0, offset: 0, queues: 1, queueSize: 8), 1,
             .wrongFileDescriptorCount(request: 31, expected: 0...0, actual: 1)),
            (32, Array(Self.payload(size: 4096, offset: 0, queues: 1, queueSize: 8).prefix(20)), 1,
             .wrongPayloadSize(request: 32, expected: 24, actual: 20)),
        ]
        for (request, bytes, fds, expected) in cases {
            #expect(throws: expected) { try VU.decode(request: request, payload: bytes, fds: fds) }
        }
        // The front-end side refuses to send what the back-end would refuse.
        #expect(throws: VhostUserProtocolError.invalidInflight(.queueSize(0))) {
            try VhostUserCodec.encode(.getInflightFD(VhostUserInflight(queueCount: 1, queueSize: 0)))
        }
        // A packed ring's size need not be a power of 2.
        #expect(try VU.decode(request: 31, payload: Self.payload(size: 0, offset: 0, queues: 1, queueSize: 100), fds: 0)
            == .getInflightFD(VhostUserInflight(queueCount: 1, queueSize: 100)))
    }

    @Test("GHT-INF-01: GET_INFLIGHT_FD's reply carries the area and exactly one descriptor, for the queues asked")
    func reply() throws {
        let asked = VhostUserMessage.getInflightFD(VhostUserInflight(queueCount: 2, queueSize: 256))
        let area = VhostUserInflight(mmapSize: 8192, mmapOffset: 0, queueCount: 2, queueSize: 256)
        let (header, payload) = try VU.split(try VhostUserCodec.encodeReply(.inflight(area)))
        #expect(try VhostUserCodec.decodeReply(header: header, payload: payload, fileDescriptorCount: 1, answering: asked) == .inflight(area))
        #expect(throws: VhostUserProtocolError.wrongFileDescriptorCount(request: 31, expected: 1...1, actual: 0)) {
            try VhostUserCodec.decodeReply(header: header, payload: payload, fileDescriptorCount: 0, answering: asked)
        }
        var other = area
        other.queueSize = 128
        let (h2, p2) = try VU.split(try VhostUserCodec.encodeReply(.inflight(other)))
        #expect(throws: VhostUserProtocolError.replyFieldMismatch(request: 31, expected: 2 << 16 | 256, actual: 2 << 16 | 128)) {
            try VhostUserCodec.decodeReply(header: h2, payload: p2, fileDescriptorCount: 1, answering: asked)
        }
        var empty = area
        empty.mmapSize = 0
        #expect(throws: VhostUserProtocolError.invalidInflight(.mmapSize(0))) { try VhostUserCodec.encodeReply(.inflight(empty)) }
    }
}
