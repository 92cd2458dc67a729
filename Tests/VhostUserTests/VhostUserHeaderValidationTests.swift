import Testing
import VirtioCore
import VirtioGrants
import VhostUser

/// Rules a message breaks before its payload is looked at: header, direction, request number,
/// payload size and descriptor count.
@Suite("vhost-user codec: header, size and descriptor rules", .tags(.vhostUser))
struct VhostUserHeaderValidationTests {
    @Test("GHT-VU-01: fewer than 12 header bytes are refused")
    func truncatedHeader() {
        let header = VhostUserHeader.request(1, payloadSize: 0).encoded()
        for n in 0..<12 {
            #expect(throws: VhostUserProtocolError.truncatedHeader(byteCount: n)) { try VhostUserHeader.decode(header.prefix(n)) }
        }
    }

    @Test("GHT-VU-02: a version other than 1 is refused")
    func badVersion() {
        for version: UInt32 in [0, 2, 3] {
            let bytes = VU.le32(1) + VU.le32(version) + VU.le32(0)
            #expect(throws: VhostUserProtocolError.unsupportedVersion(version)) { try VhostUserHeader.decode(bytes) }
            #expect(throws: VhostUserProtocolError.unsupportedVersion(version)) { try VU.decode(request: 1, payload: [], flags: version) }
        }
    }

    @Test("GHT-VU-03: reserved flag bits are refused")
    func reservedFlags() {
        for flags: UInt32 in [0x11, 0x8000_0001, 0xFFFF_FFFD] {
            #expect(throws: VhostUserProtocolError.reservedFlags(flags)) { try VhostUserHeader.decode(VU.le32(1) + VU.le32(flags) + VU.le32(0)) }
        }
    }

    @Test("GHT-VU-04: an oversized payload is refused from the header alone")
    func oversizedHeader() throws {
        for size: UInt32 in [4097, 0x10_0000, 0xFFFF_FFFF] {
            let bytes = VU.le32(5) + VU.le32(1) + VU.le32(size)
            #expect(throws: VhostUserProtocolError.payloadTooLarge(size: size, maximum: 4096)) { try VhostUserHeader.decode(bytes) }
            let header = VhostUserHeader(request: 5, flags: .version1, payloadSize: size)
            #expect(throws: VhostUserProtocolError.payloadTooLarge(size: size, maximum: 4096)) {
                try VhostUserCodec.decode(header: header, payload: [UInt8](), fileDescriptorCount: 0)
            }
        }
        #expect(try VhostUserHeader.decode(VU.le32(26) + VU.le32(1) + VU.le32(4096)).payloadSize == 4096)
        #expect(throws: VhostUserProtocolError.payloadTooLarge(size: 4097, maximum: 4096)) {
            try VhostUserCodec.encode(.unsupported(.createCryptoSession, payload: Array(repeating: 0, count: 4097)))
        }
    }

    @Test("GHT-VU-04: a payload that does not match the header's size is refused")
    func lengthMismatch() {
        let header = VhostUserHeader.request(2, payloadSize: 8)
        #expect(throws: VhostUserProtocolError.payloadLengthMismatch(declared: 8, actual: 7)) {
            try VhostUserCodec.decode(header: header, payload: [UInt8](repeating: 0, count: 7), fileDescriptorCount: 0)
        }
    }

    @Test("GHT-VU-05: a request with the REPLY flag is refused")
    func replyOnRequest() {
        #expect(throws: VhostUserProtocolError.replyFlagOnRequest(request: 1)) { try VU.decode(request: 1, payload: [], flags: 0x5) }
        #expect(throws: VhostUserProtocolError.replyFlagOnRequest(request: 2)) {
            try VhostUserCodec.decodeBackEndMessage(header: .reply(2, payloadSize: 0), payload: [UInt8](), fileDescriptorCount: 0)
        }
    }

    @Test("GHT-VU-06: unknown request numbers are refused")
    func unknownRequest() {
        for request: UInt32 in [0, 41, 44, 100, 1023, 1026, 0xFFFF_FFFF] {
            #expect(throws: VhostUserProtocolError.unknownRequest(request)) { try VU.decode(request: request, payload: []) }
        }
        for request: UInt32 in [0, 4, 5, 1024] {
            #expect(throws: VhostUserProtocolError.unknownBackEndRequest(request)) {
                try VhostUserCodec.decodeBackEndMessage(header: .request(request, payloadSize: 0), payload: [UInt8](), fileDescriptorCount: 0)
            }
        }
    }

    @Test("GHT-VU-07: each request refuses a payload one byte short or one byte long")
    func wrongSize() throws {
        for message in VU.samples {
            if case .unsupported = message { continue }
            let payload = message.encodedPayload()
            let raw = message.request.rawValue
            let fds = message.fileDescriptorCount
            for bad in [payload + [0], payload.isEmpty ? nil : Array(payload.dropLast())].compactMap({ $0 }) {
                do {
                    _ = try VU.decode(request: raw, payload: bad, fds: fds)
                    Issue.record("\(message) accepted with \(bad.count) bytes")
                } catch {
                    guard case .wrongPayloadSize(raw, _, bad.count) = error else {
                        Issue.record("\(message) with \(bad.count) bytes: \(error)")
                        continue
                    }
                }
            }
        }
        #expect(throws: VhostUserProtocolError.wrongPayloadSize(request: 1, expected: 0, actual: 8)) {
            try VU.decode(request: 1, payload: VU.le64(0))
        }
        #expect(throws: VhostUserProtocolError.wrongPayloadSize(request: 22, expected: 32, actual: 28)) {
            try VU.decode(request: 22, payload: Array(VU.iotlbBytes(iova: 0, size: 1, uaddr: 0, perm: 1, type: 2).prefix(28)))
        }
    }

    @Test("GHT-VU-08: each request refuses one descriptor too many or too few")
    func wrongDescriptorCount() throws {
        for message in VU.samples {
            let bytes = try VhostUserCodec.encode(message)
            let fds = message.fileDescriptorCount
            var bad = [fds + 1]
            if case .removeMemoryRegion = message { bad = [2] }
            if case .unsupported(.setLogBase, _) = message { bad = [2] }
            if fds > 0 { bad.append(fds - 1) }
            for count in bad {
                do {
                    _ = try VU.decode(bytes, fds: count)
                    Issue.record("\(message) accepted with \(count) descriptors")
                } catch {
                    guard case .wrongFileDescriptorCount(message.request.rawValue, _, count) = error else {
                        Issue.record("\(message): \(error)")
                        continue
                    }
                }
            }
        }
    }

    @Test("GHT-VU-08: REM_MEM_REG takes zero or one descriptor; NOFD decides for vring files")
    func descriptorRules() throws {
        let rem = try VhostUserCodec.encode(.removeMemoryRegion(VU.region0))
        #expect(try VU.decode(rem, fds: 0) == .removeMemoryRegion(VU.region0))
        #expect(try VU.decode(rem, fds: 1) == .removeMemoryRegion(VU.region0))
        #expect(throws: VhostUserProtocolError.wrongFileDescriptorCount(request: 12, expected: 0...0, actual: 1)) {
            try VU.decode(request: 12, payload: VU.le64(0x100), fds: 1)
        }
        #expect(throws: VhostUserProtocolError.wrongFileDescriptorCount(request: 14, expected: 1...1, actual: 0)) {
            try VU.decode(request: 14, payload: VU.le64(0x7), fds: 0)
        }
        #expect(throws: VhostUserProtocolError.wrongFileDescriptorCount(request: 5, expected: 2...2, actual: 1)) {
            try VU.decode(request: 5, payload: VhostUserMemoryTable(regions: [VU.region0, VU.region1]).encoded(), fds: 1)
        }
        #expect(throws: VhostUserProtocolError.wrongFileDescriptorCount(request: 1, expected: 0...0, actual: -1)) {
            try VU.decode(request: 1, payload: [], fds: -1)
        }
    }

    @Test("GHT-VU-17: unsupported requests still obey their descriptor counts")
    func unsupportedDescriptors() {
        #expect(throws: VhostUserProtocolError.wrongFileDescriptorCount(request: 7, expected: 1...1, actual: 0)) {
            try VU.decode(request: 7, payload: [], fds: 0)
        }
        #expect(throws: VhostUserProtocolError.wrongFileDescriptorCount(request: 28, expected: 0...0, actual: 1)) {
            try VU.decode(request: 28, payload: [], fds: 1)
        }
        #expect(throws: Never.self) { try VU.decode(request: 6, payload: VU.le64(4096) + VU.le64(0), fds: 1) }
    }
}
