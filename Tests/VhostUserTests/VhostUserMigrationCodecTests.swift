import Testing
import VirtioCore
import VhostUser

/// The wire of dirty logging (SET_LOG_BASE, SET_LOG_FD) and of the device state transfer
/// (SET_DEVICE_STATE_FD, CHECK_DEVICE_STATE): round trips and every malformed field.
@Suite("vhost-user migration messages: dirty log and device state on the wire")
struct VhostUserMigrationCodecTests {
    static func roundTrip(_ message: VhostUserMessage) throws -> VhostUserMessage {
        let bytes = try VhostUserCodec.encode(message)
        return try VU.decode(bytes, fds: message.fileDescriptorCount)
    }

    @Test("GHT-LOG-02: SET_LOG_BASE carries mmap_size and mmap_offset (16 bytes) and one descriptor; SET_LOG_FD one descriptor and no payload")
    func logRoundTrips() throws {
        let area = VhostUserLogArea(size: 0x2000, offset: 0x1000)
        #expect(try Self.roundTrip(.setLogBase(area)) == .setLogBase(area))
        #expect(area.encoded() == VU.le64(0x2000) + VU.le64(0x1000))
        #expect(try Self.roundTrip(.setLogFD) == .setLogFD)
        #expect(VhostUserMessage.setLogBase(area).fileDescriptorCount == 1 && VhostUserMessage.setLogFD.fileDescriptorCount == 1)
        #expect(VhostUserRequest.setLogBase.isSupported && VhostUserRequest.setLogBase.alwaysReplies)
        #expect(VhostUserLogArea.bytesCovering(guestEnd: 0) == 0 && VhostUserLogArea.bytesCovering(guestEnd: 1) == 1)
        #expect(VhostUserLogArea.bytesCovering(guestEnd: 8 * 4096) == 1 && VhostUserLogArea.bytesCovering(guestEnd: 8 * 4096 + 1) == 2)
    }

    @Test("GHT-LOG-02: a log of 0 bytes, one whose offset + size passes 2^64 or the largest file offset, the 8-byte form without a log description, and a wrong descriptor count are refused")
    func malformedLog() {
        let request = VhostUserRequest.setLogBase.rawValue
        #expect(throws: VhostUserProtocolError.invalidLogArea(request: request, size: 0, offset: 0)) {
            try VU.decode(request: request, payload: VU.le64(0) + VU.le64(0), fds: 1)
        }
        #expect(throws: VhostUserProtocolError.invalidLogArea(request: request, size: 2, offset: UInt64.max)) {
            try VU.decode(request: request, payload: VU.le64(2) + VU.le64(UInt64.max), fds: 1)
        }
        #expect(throws: VhostUserProtocolError.invalidLogArea(request: request, size: 1, offset: UInt64(Int64.max))) {
            try VU.decode(request: request, payload: VU.le64(1) + VU.le64(UInt64(Int64.max)), fds: 1)
        }
        #expect(throws: VhostUserProtocolError.wrongPayloadSize(request: request, expected: 16, actual: 8)) {
            try VU.decode(request: request, payload: VU.le64(4096), fds: 1)
        }
        for fds in [0, 2] {
            #expect(throws: VhostUserProtocolError.wrongFileDescriptorCount(request: request, expected: 1...1, actual: fds)) {
                try VU.decode(request: request, payload: VU.le64(4096) + VU.le64(0), fds: fds)
            }
        }
        #expect(throws: VhostUserProtocolError.wrongPayloadSize(request: 7, expected: 0, actual: 8)) {
            try VU.decode(request: 7, payload: VU.le64(0), fds: 1)
        }
        #expect(throws: VhostUserProtocolError.invalidLogArea(request: request, size: 0, offset: 0)) {
            try VhostUserCodec.encode(.setLogBase(VhostUserLogArea(size: 0)))
        }
    }

    @Test("GHT-DST-02: SET_DEVICE_STATE_FD carries direction and phase (8 bytes) and one descriptor; CHECK_DEVICE_STATE nothing; both are answered with a u64")
    func stateRoundTrips() throws {
        for direction in [VhostUserDeviceStateTransfer.Direction.save, .load] {
            let transfer = VhostUserDeviceStateTransfer(direction: direction)
            #expect(try Self.roundTrip(.setDeviceStateFD(transfer)) == .setDeviceStateFD(transfer))
        }
        #expect(VhostUserDeviceStateTransfer(direction: .load).encoded() == [1, 0, 0, 0, 0, 0, 0, 0])
        #expect(try Self.roundTrip(.checkDeviceState) == .checkDeviceState)
        #expect(VhostUserRequest(rawValue: 42) == .setDeviceStateFD && VhostUserRequest(rawValue: 43) == .checkDeviceState)
        #expect(VhostUserRequest.setDeviceStateFD.alwaysReplies && VhostUserRequest.checkDeviceState.alwaysReplies)
        #expect(VhostUserProtocolFeatures.deviceState.rawValue == 1 << 19)
        #expect(VirtioFeatures.vhostLogAll.rawValue == 1 << 26)
    }

    @Test("GHT-DST-02: a direction other than save or load, a phase other than stopped, a wrong size or descriptor count are refused; a reply without the no-descriptor flag or with reserved bits is refused")
    func malformedState() throws {
        let request = VhostUserRequest.setDeviceStateFD.rawValue
        #expect(throws: VhostUserProtocolError.reservedBitsSet(request: request, value: 2)) {
            try VU.decode(request: request, payload: [2, 0, 0, 0, 0, 0, 0, 0], fds: 1)
        }
        #expect(throws: VhostUserProtocolError.reservedBitsSet(request: request, value: 1 << 32)) {
            try VU.decode(request: request, payload: [0, 0, 0, 0, 1, 0, 0, 0], fds: 1)
        }
        #expect(throws: VhostUserProtocolError.wrongPayloadSize(request: request, expected: 8, actual: 4)) {
            try VU.decode(request: request, payload: [0, 0, 0, 0], fds: 1)
        }
        #expect(throws: VhostUserProtocolError.wrongFileDescriptorCount(request: request, expected: 1...1, actual: 0)) {
            try VU.decode(request: request, payload: [0, 0, 0, 0, 0, 0, 0, 0], fds: 0)
        }
        #expect(throws: VhostUserProtocolError.wrongPayloadSize(request: 43, expected: 0, actual: 1)) {
            try VU.decode(request: 43, payload: [0], fds: 0)
        }
        let asked = VhostUserMessage.setDeviceStateFD(VhostUserDeviceStateTransfer(direction: .save))
        func reply(_ value: UInt64) throws -> VhostUserReply {
            try VhostUserCodec.decodeReply(header: .reply(request, payloadSize: 8), payload: VU.le64(value), fileDescriptorCount: 0, answering: asked)
        }
        #expect(try reply(0x100) == .ack(.setDeviceStateFD, .success))
        #expect(try reply(0x101) == .ack(.setDeviceStateFD, .failure(1)))
        #expect(throws: VhostUserProtocolError.reservedBitsSet(request: request, value: 0)) { try reply(0) }
        #expect(throws: VhostUserProtocolError.reservedBitsSet(request: request, value: 0x300)) { try reply(0x300) }
    }
}
