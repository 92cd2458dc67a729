import Testing
import VirtioConformance
import VirtioCore
import VirtioGrants
import VhostUser

extension Tag {
    @Tag static var vhostUser: Self
}

/// Shared samples and helpers for the vhost-user codec tests.
enum VU {
    static let region0 = VhostUserMemoryRegion(guestAddress: 0, size: 0x8000_0000, userAddress: 0x7F00_0000_0000, mmapOffset: 0)
    static let region1 = VhostUserMemoryRegion(guestAddress: 0x1_0000_0000, size: 0x4000_0000,
                                               userAddress: 0x7F80_0000_0000, mmapOffset: 0x8000_0000)
    static let grantTable = VhostUserGrantTable(granter: DomainID(1), grantee: DomainID(0), tableSize: 0x2000, tableOffset: 0x1000,
                                                framesGuestAddress: 0x8000_0000, frameCount: 0x4_0000)

    /// One valid message per request number, plus variants (NOFD, a full memory table, ...).
    static let samples: [VhostUserMessage] = [
        .getFeatures,
        .setFeatures([.version1, .accessPlatform, .vhostUserProtocolFeatures]),
        .setOwner,
        .resetOwner,
        .setMemoryTable(VhostUserMemoryTable(regions: [region0, region1])),
        .setMemoryTable(VhostUserMemoryTable(regions: [])),
        .setMemoryTable(VhostUserMemoryTable(regions: (0..<8).map {
            VhostUserMemoryRegion(guestAddress: UInt64($0) << 32, size: 0x1000, userAddress: 0x1000 * UInt64($0 + 1), mmapOffset: 0)
        })),
        .setVringNum(VhostUserVringState(index: 0, num: 256)),
        .setVringAddress(VhostUserVringAddress(index: 1, descriptor: 0x1000, used: 0x3000, available: 0x2000)),
        .setVringAddress(VhostUserVringAddress(index: 1, flags: .log, descriptor: 0x1000, used: 0x3000, available: 0x2000, log: 0x9000)),
        .setVringBase(VhostUserVringState(index: 1, num: 7)),
        .getVringBase(VhostUserVringState(index: 1, num: 0)),
        .setVringKick(VhostUserVringFile(index: 0)),
        .setVringKick(VhostUserVringFile(index: 255, hasFileDescriptor: false)),
        .setVringCall(VhostUserVringFile(index: 1)),
        .setVringCall(VhostUserVringFile(index: 1, hasFileDescriptor: false)),
        .setVringErr(VhostUserVringFile(index: 2)),
        .getProtocolFeatures,
        .setProtocolFeatures([.multiQueue, .replyAck, .backendRequest, .config, .grantTable]),
        .getQueueNum,
        .setVringEnable(VhostUserVringState(index: 0, num: 1)),
        .setVringEnable(VhostUserVringState(index: 0, num: 0)),
        .setBackEndRequestFD,
        .iotlb(.update(iova: 0x1000, size: 0x2000, userAddress: 0x7000_0000, permission: .readWrite)),
        .iotlb(.update(iova: 0xFFFF_FFFF_FFFF_F000, size: 0x1000, userAddress: 0, permission: .readOnly)),
        .iotlb(.invalidate(iova: 0x1000, size: 0x2000)),
        .setVringEndian(VhostUserVringState(index: 0, num: 0)),
        .getConfig(.request(offset: 0, size: 60)),
        .setConfig(VhostUserConfig(offset: 8, data: [1, 2, 3, 4])),
        .setConfig(VhostUserConfig(offset: 0, flags: .liveMigration, data: Array(repeating: 0x5A, count: 256))),
        .resetDevice,
        .vringKick(VhostUserVringState(index: 3, num: 0)),
        .getMaxMemorySlots,
        .addMemoryRegion(region1),
        .removeMemoryRegion(region1),
        .setStatus([.acknowledge, .driver, .featuresOK]),
        .getStatus,
        .setGrantTable(grantTable),
        .revokeGrants(VhostUserGrantRange(first: GrantReference(8), count: 3)),
        .revokeGrants(VhostUserGrantRange(first: GrantReference(0xFFFF_FFFF), count: 1)),
        .getInflightFD(VhostUserInflight(queueCount: 2, queueSize: 256)),
        .setInflightFD(VhostUserInflight(mmapSize: 8192, mmapOffset: 4096, queueCount: 1, queueSize: 32768)),
    ] + VhostUserRequest.allCases.filter { !$0.isSupported }.map { request in
        .unsupported(request, payload: request == .sendRARP ? [0x52, 0x54, 0, 0x12, 0x34, 0x56, 0, 0] : [])
    }

    /// Splits encoded bytes into header and payload.
    static func split(_ bytes: [UInt8]) throws -> (VhostUserHeader, [UInt8]) {
        let header = try VhostUserHeader.decode(bytes)
        return (header, Array(bytes.dropFirst(VhostUserHeader.byteCount)))
    }

    /// Decodes encoded request bytes with `fds` descriptors.
    static func decode(_ bytes: [UInt8], fds: Int) throws(VhostUserProtocolError) -> VhostUserMessage {
        let header = try VhostUserHeader.decode(bytes)
        return try VhostUserCodec.decode(header: header, payload: bytes.dropFirst(VhostUserHeader.byteCount), fileDescriptorCount: fds)
    }

    /// A request with a hand-made header (version 1 unless `flags` says otherwise).
    static func decode(request: UInt32, payload: [UInt8], fds: Int = 0, flags: UInt32 = 1) throws(VhostUserProtocolError) -> VhostUserMessage {
        let header = VhostUserHeader(request: request, flags: VhostUserHeaderFlags(rawValue: flags), payloadSize: UInt32(payload.count))
        return try VhostUserCodec.decode(header: header, payload: payload, fileDescriptorCount: fds)
    }

    static func le32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }
    static func le64(_ v: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: v >> (8 * UInt64($0))) } }
    static func le16(_ v: UInt16) -> [UInt8] { [UInt8(truncatingIfNeeded: v), UInt8(truncatingIfNeeded: v >> 8)] }

    /// A raw memory region description.
    static func regionBytes(_ gpa: UInt64, _ size: UInt64, _ uaddr: UInt64, _ offset: UInt64) -> [UInt8] {
        le64(gpa) + le64(size) + le64(uaddr) + le64(offset)
    }

    /// A raw SET_GRANT_TABLE payload.
    static func grantTableBytes(granter: UInt16 = 1, grantee: UInt16 = 0, flags: UInt32 = 0, size: UInt64 = 0x2000,
                                offset: UInt64 = 0x1000, gpa: UInt64 = 0x8000_0000, count: UInt64 = 16) -> [UInt8] {
        le16(granter) + le16(grantee) + le32(flags) + le64(size) + le64(offset) + le64(gpa) + le64(count)
    }

    /// A raw IOTLB payload with `padding` for the 6 trailing bytes.
    static func iotlbBytes(iova: UInt64, size: UInt64, uaddr: UInt64, perm: UInt8, type: UInt8, padding: UInt8 = 0) -> [UInt8] {
        le64(iova) + le64(size) + le64(uaddr) + [perm, type] + Array(repeating: padding, count: 6)
    }
}
