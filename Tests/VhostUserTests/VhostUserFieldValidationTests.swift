import Testing
import VirtioCore
import VirtioGrants
import VhostUser

/// Rules on the fields of standard vhost-user payloads.
@Suite("vhost-user codec: field rules", .tags(.vhostUser))
struct VhostUserFieldValidationTests {
    @Test("GHT-VU-09: more than 8 regions are refused, whatever the payload and descriptors say")
    func tooManyRegions() throws {
        let nine = (0..<9).map { VU.regionBytes(UInt64($0) << 32, 0x1000, 0x1000, 0) }.joined()
        #expect(throws: VhostUserProtocolError.tooManyMemoryRegions(count: 9, maximum: 8)) {
            try VU.decode(request: 5, payload: VU.le32(9) + VU.le32(0) + nine, fds: 9)
        }
        // A huge count with a short payload is refused before anything is allocated for it.
        #expect(throws: VhostUserProtocolError.tooManyMemoryRegions(count: 0xFFFF_FFFF, maximum: 8)) {
            try VU.decode(request: 5, payload: VU.le32(0xFFFF_FFFF) + VU.le32(0), fds: 0)
        }
        #expect(throws: VhostUserProtocolError.wrongPayloadSize(request: 5, expected: 8, actual: 4)) {
            try VU.decode(request: 5, payload: VU.le32(0), fds: 0)
        }
        let regions = (0..<9).map { VhostUserMemoryRegion(guestAddress: UInt64($0) << 32, size: 1, userAddress: 0, mmapOffset: 0) }
        #expect(throws: VhostUserProtocolError.tooManyMemoryRegions(count: 9, maximum: 8)) {
            try VhostUserCodec.encode(.setMemoryTable(VhostUserMemoryTable(regions: regions)))
        }
    }

    @Test("GHT-VU-10: empty and overflowing regions are refused, in tables and alone")
    func badRegions() throws {
        let cases: [([UInt8], VhostUserProtocolError.MemoryRegionDefect)] = [
            (VU.regionBytes(0x1000, 0, 0x1000, 0), .empty),
            (VU.regionBytes(0xFFFF_FFFF_FFFF_F000, 0x2000, 0x1000, 0), .guestAddressOverflow),
            (VU.regionBytes(0x1000, 0x2000, 0xFFFF_FFFF_FFFF_F001, 0), .userAddressOverflow),
            (VU.regionBytes(0x1000, 0x2000, 0x1000, 0x7FFF_FFFF_FFFF_F000), .mmapOffsetOverflow),
            (VU.regionBytes(0x1000, 0x2000, 0x1000, 0x8000_0000_0000_0000), .mmapOffsetOverflow),
        ]
        for (region, defect) in cases {
            let good = VU.regionBytes(0x1_0000_0000_0000, 0x1000, 0x2000, 0)
            #expect(throws: VhostUserProtocolError.invalidMemoryRegion(index: 1, defect: defect)) {
                try VU.decode(request: 5, payload: VU.le32(2) + VU.le32(0) + good + region, fds: 2)
            }
            #expect(throws: VhostUserProtocolError.invalidMemoryRegion(index: 0, defect: defect)) {
                try VU.decode(request: 37, payload: VU.le64(0) + region, fds: 1)
            }
            #expect(throws: VhostUserProtocolError.invalidMemoryRegion(index: 0, defect: defect)) {
                try VU.decode(request: 38, payload: VU.le64(0) + region, fds: 0)
            }
        }
        // Ending exactly at 2^64 is not an overflow.
        let top = VhostUserMemoryRegion(guestAddress: 0xFFFF_FFFF_FFFF_F000, size: 0x1000, userAddress: 0xFFFF_FFFF_FFFF_F000, mmapOffset: 0)
        #expect(try VU.decode(request: 37, payload: VU.le64(0) + top.encoded(), fds: 1) == .addMemoryRegion(top))
        #expect(throws: VhostUserProtocolError.invalidMemoryRegion(index: 0, defect: .empty)) {
            try VhostUserCodec.encode(.addMemoryRegion(VhostUserMemoryRegion(guestAddress: 0, size: 0, userAddress: 0, mmapOffset: 0)))
        }
    }

    @Test("GHT-VU-10: regions of one table must not overlap in guest-physical space")
    func overlappingRegions() throws {
        let a = VU.regionBytes(0x0, 0x2000, 0x10_0000, 0)
        let b = VU.regionBytes(0x4000, 0x1000, 0x20_0000, 0)
        let c = VU.regionBytes(0x1FFF, 0x1, 0x30_0000, 0)
        #expect(throws: VhostUserProtocolError.overlappingMemoryRegions(first: 0, second: 2)) {
            try VU.decode(request: 5, payload: VU.le32(3) + VU.le32(0) + a + b + c, fds: 3)
        }
        let adjacent = VU.regionBytes(0x2000, 0x2000, 0x10_0000, 0)
        #expect(throws: Never.self) { try VU.decode(request: 5, payload: VU.le32(2) + VU.le32(0) + a + adjacent, fds: 2) }
    }

    @Test("GHT-VU-11: vring file bits 9-63 are reserved")
    func vringFileReservedBits() {
        for value: UInt64 in [0x200, 0x1_0000_0000, 0x8000_0000_0000_0001] {
            #expect(throws: VhostUserProtocolError.reservedBitsSet(request: 13, value: value)) {
                try VU.decode(request: 13, payload: VU.le64(value), fds: 1)
            }
        }
    }

    @Test("GHT-VU-12: reserved values of vring flags, enable, endian, in-band kick and status")
    func reservedValues() {
        let address = VU.le32(0) + VU.le32(0x2) + VU.le64(0x1000) + VU.le64(0x2000) + VU.le64(0x3000) + VU.le64(0)
        #expect(throws: VhostUserProtocolError.reservedBitsSet(request: 9, value: 2)) { try VU.decode(request: 9, payload: address) }
        #expect(throws: VhostUserProtocolError.reservedBitsSet(request: 18, value: 2)) { try VU.decode(request: 18, payload: VU.le32(0) + VU.le32(2)) }
        #expect(throws: VhostUserProtocolError.reservedBitsSet(request: 23, value: 7)) { try VU.decode(request: 23, payload: VU.le32(0) + VU.le32(7)) }
        #expect(throws: VhostUserProtocolError.reservedBitsSet(request: 35, value: 1)) { try VU.decode(request: 35, payload: VU.le32(0) + VU.le32(1)) }
        #expect(throws: VhostUserProtocolError.reservedBitsSet(request: 39, value: 0x100)) { try VU.decode(request: 39, payload: VU.le64(0x100)) }
        #expect(throws: VhostUserProtocolError.reservedBitsSet(request: 18, value: 3)) {
            try VhostUserCodec.encode(.setVringEnable(VhostUserVringState(index: 0, num: 3)))
        }
    }

    @Test("GHT-VU-13: configuration accesses stay inside 256 bytes, with exact size and known flags")
    func badConfig() {
        func config(_ offset: UInt32, _ size: UInt32, _ flags: UInt32 = 0, data: Int? = nil) -> [UInt8] {
            VU.le32(offset) + VU.le32(size) + VU.le32(flags) + Array(repeating: 0, count: data ?? Int(min(size, 4000)))
        }
        #expect(throws: VhostUserProtocolError.invalidConfigRange(offset: 0, size: 257)) { try VU.decode(request: 25, payload: config(0, 257)) }
        #expect(throws: VhostUserProtocolError.invalidConfigRange(offset: 200, size: 100)) { try VU.decode(request: 24, payload: config(200, 100)) }
        #expect(throws: VhostUserProtocolError.invalidConfigRange(offset: 0xFFFF_FFFF, size: 1)) { try VU.decode(request: 24, payload: config(0xFFFF_FFFF, 1)) }
        #expect(throws: VhostUserProtocolError.invalidConfigRange(offset: 0, size: 0xFFFF_FFFF)) {
            try VU.decode(request: 25, payload: config(0, 0xFFFF_FFFF, data: 4))
        }
        #expect(throws: VhostUserProtocolError.wrongPayloadSize(request: 25, expected: 16, actual: 20)) { try VU.decode(request: 25, payload: config(0, 4, data: 8)) }
        #expect(throws: VhostUserProtocolError.wrongPayloadSize(request: 24, expected: 12, actual: 11)) {
            try VU.decode(request: 24, payload: Array(config(0, 0).prefix(11)))
        }
        #expect(throws: VhostUserProtocolError.invalidConfigFlags(2)) { try VU.decode(request: 25, payload: config(0, 4, 2)) }
        #expect(throws: Never.self) { try VU.decode(request: 25, payload: config(0, 256, 1)) }
        #expect(throws: VhostUserProtocolError.invalidConfigRange(offset: 255, size: 2)) {
            try VhostUserCodec.encode(.setConfig(VhostUserConfig(offset: 255, data: [1, 2])))
        }
    }

    @Test("GHT-VU-14: IOTLB messages need a known type for their direction, a permission and a sane range")
    func badIOTLB() {
        func iotlb(_ type: UInt8, perm: UInt8 = 3, iova: UInt64 = 0x1000, size: UInt64 = 0x1000, uaddr: UInt64 = 0x10_0000) -> [UInt8] {
            VU.iotlbBytes(iova: iova, size: size, uaddr: uaddr, perm: perm, type: type)
        }
        for type: UInt8 in [0, 5, 0xFF] {
            #expect(throws: VhostUserProtocolError.unknownIOTLBType(type)) { try VU.decode(request: 22, payload: iotlb(type)) }
        }
        for type: UInt8 in [1, 4] {
            #expect(throws: VhostUserProtocolError.unexpectedIOTLBType(type)) { try VU.decode(request: 22, payload: iotlb(type)) }
        }
        for perm: UInt8 in [0, 4, 0x83] {
            #expect(throws: VhostUserProtocolError.invalidIOTLBPermission(perm)) { try VU.decode(request: 22, payload: iotlb(2, perm: perm)) }
        }
        #expect(throws: VhostUserProtocolError.invalidIOTLBRange(iova: 0x1000, size: 0)) { try VU.decode(request: 22, payload: iotlb(2, size: 0)) }
        #expect(throws: VhostUserProtocolError.invalidIOTLBRange(iova: 0xFFFF_FFFF_FFFF_F000, size: 0x1001)) {
            try VU.decode(request: 22, payload: iotlb(2, iova: 0xFFFF_FFFF_FFFF_F000, size: 0x1001))
        }
        #expect(throws: VhostUserProtocolError.invalidIOTLBRange(iova: 0, size: 0x2000)) {
            try VU.decode(request: 22, payload: iotlb(2, iova: 0, size: 0x2000, uaddr: 0xFFFF_FFFF_FFFF_F000))
        }
        #expect(throws: VhostUserProtocolError.wrongPayloadSize(request: 22, expected: 32, actual: 26)) {
            try VU.decode(request: 22, payload: Array(iotlb(2).prefix(26)))
        }
        // The back-end channel carries only MISS and ACCESS_FAIL, and a MISS needs an access.
        let header = VhostUserHeader.request(1, payloadSize: 32)
        for (payload, error) in [(iotlb(2), VhostUserProtocolError.unexpectedIOTLBType(2)), (iotlb(3), .unexpectedIOTLBType(3)),
                                 (iotlb(1, perm: 0), .invalidIOTLBPermission(0)), (iotlb(4, perm: 9), .invalidIOTLBPermission(9)),
                                 (iotlb(7), .unknownIOTLBType(7))] {
            #expect(throws: error) { try VhostUserCodec.decodeBackEndMessage(header: header, payload: payload, fileDescriptorCount: 0) }
        }
        #expect(throws: VhostUserProtocolError.wrongFileDescriptorCount(request: 1, expected: 0...0, actual: 1)) {
            try VhostUserCodec.decodeBackEndMessage(header: header, payload: iotlb(1), fileDescriptorCount: 1)
        }
        #expect(throws: VhostUserProtocolError.invalidIOTLBPermission(0)) { try VhostUserCodec.encodeIOTLBMiss(iova: 0, permission: .none) }
        #expect(throws: VhostUserProtocolError.unexpectedIOTLBType(1)) { try VhostUserCodec.encode(VhostUserMessage.iotlb(.miss(iova: 0, permission: .readOnly))) }
    }
}
