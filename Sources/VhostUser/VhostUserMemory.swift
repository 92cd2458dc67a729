/// One region of guest memory shared with the back-end (vhost-user.rst "Memory regions
/// description"; QEMU `VhostUserMemoryRegion`): le64 guest_phys_addr, le64 memory_size,
/// le64 userspace_addr, le64 mmap_offset — 32 bytes. The region's file descriptor travels
/// in the ancillary data; the back-end maps `memory_size` bytes of it at `mmap_offset`.
@frozen
public struct VhostUserMemoryRegion: Hashable, Sendable {
    /// `guest_phys_addr`: where the region starts in guest-physical space.
    public var guestAddress: UInt64
    /// `memory_size` in bytes.
    public var size: UInt64
    /// `userspace_addr`: where the region starts in the front-end's address space (the address
    /// that vring addresses and IOTLB user addresses are expressed in).
    public var userAddress: UInt64
    /// `mmap_offset`: where the region starts in its file. Not required to be page-aligned
    /// (QEMU sends RAM block offsets); the back-end maps from a page boundary below it.
    public var mmapOffset: UInt64

    /// Bytes of one region description.
    public static let byteCount = 32

    @inlinable
    public init(guestAddress: UInt64, size: UInt64, userAddress: UInt64, mmapOffset: UInt64) {
        self.guestAddress = guestAddress
        self.size = size
        self.userAddress = userAddress
        self.mmapOffset = mmapOffset
    }

    /// The 32 bytes of the description.
    public func encoded() -> [UInt8] {
        var w = VhostUserWriter(capacity: Self.byteCount)
        append(to: &w)
        return w.bytes
    }

    package func append(to w: inout VhostUserWriter) {
        w.u64(guestAddress)
        w.u64(size)
        w.u64(userAddress)
        w.u64(mmapOffset)
    }

    package init(from r: inout VhostUserReader) {
        guestAddress = r.u64()
        size = r.u64()
        userAddress = r.u64()
        mmapOffset = r.u64()
    }

    /// GHT-VU-10: the region is not empty, neither its guest-physical nor its user range passes
    /// 2^64, and its file range fits `off_t`. `index` is the region's place in its table (0 for
    /// ADD/REM_MEM_REG), reported in the error.
    public func validate(index: Int = 0) throws(VhostUserProtocolError) {
        let defect: VhostUserProtocolError.MemoryRegionDefect
        if size == 0 {
            defect = .empty
        } else if !VhostUserRange.fits(start: guestAddress, length: size) {
            defect = .guestAddressOverflow
        } else if !VhostUserRange.fits(start: userAddress, length: size) {
            defect = .userAddressOverflow
        } else if !VhostUserRange.fitsFileOffset(offset: mmapOffset, length: size) {
            defect = .mmapOffsetOverflow
        } else {
            return
        }
        throw .invalidMemoryRegion(index: index, defect: defect)
    }
}

/// The SET_MEM_TABLE payload (vhost-user.rst "Memory regions description"; QEMU
/// `VhostUserMemory`): le32 nregions, le32 padding, then exactly `nregions` region descriptions.
/// QEMU sends 8 + 32 × nregions bytes (not the whole 8-slot array) and one file descriptor per
/// region, in region order.
@frozen
public struct VhostUserMemoryTable: Hashable, Sendable {
    public var regions: [VhostUserMemoryRegion]

    /// `VHOST_MEMORY_BASELINE_NREGIONS`: the most regions one SET_MEM_TABLE carries.
    public static let maximumRegionCount = 8
    /// Bytes before the first region (nregions and padding).
    public static let headerByteCount = 8

    @inlinable
    public init(regions: [VhostUserMemoryRegion]) { self.regions = regions }

    /// The payload size for `count` regions.
    public static func byteCount(regions count: Int) -> Int { headerByteCount + count * VhostUserMemoryRegion.byteCount }

    /// The payload bytes; the padding word is 0.
    public func encoded() -> [UInt8] {
        var w = VhostUserWriter(capacity: Self.byteCount(regions: regions.count))
        w.u32(UInt32(truncatingIfNeeded: regions.count))
        w.u32(0)
        for region in regions { region.append(to: &w) }
        return w.bytes
    }

    /// GHT-VU-09 and GHT-VU-10: at most 8 regions, each valid, no two overlapping in
    /// guest-physical space.
    public func validate() throws(VhostUserProtocolError) {
        guard regions.count <= Self.maximumRegionCount else {
            throw .tooManyMemoryRegions(count: UInt32(truncatingIfNeeded: regions.count), maximum: Self.maximumRegionCount)
        }
        for (i, region) in regions.enumerated() { try region.validate(index: i) }
        for i in regions.indices {
            for j in regions.indices where j > i {
                let a = regions[i], b = regions[j]
                if VhostUserRange.overlap(a.guestAddress, a.size, b.guestAddress, b.size) {
                    throw .overlappingMemoryRegions(first: i, second: j)
                }
            }
        }
    }

    /// Decodes and validates a SET_MEM_TABLE payload whose `nregions` has not been trusted yet.
    package static func decode(_ payload: [UInt8], request: UInt32) throws(VhostUserProtocolError) -> VhostUserMemoryTable {
        guard payload.count >= headerByteCount else {
            throw .wrongPayloadSize(request: request, expected: headerByteCount, actual: payload.count)
        }
        var r = VhostUserReader(payload)
        let count = r.u32()
        r.skip(4)   // padding: ignored, whatever the sender left in it
        guard count <= UInt32(maximumRegionCount) else { throw .tooManyMemoryRegions(count: count, maximum: maximumRegionCount) }
        let expected = byteCount(regions: Int(count))
        guard payload.count == expected else { throw .wrongPayloadSize(request: request, expected: expected, actual: payload.count) }
        var regions: [VhostUserMemoryRegion] = []
        regions.reserveCapacity(Int(count))
        for _ in 0..<Int(count) { regions.append(VhostUserMemoryRegion(from: &r)) }
        let table = VhostUserMemoryTable(regions: regions)
        try table.validate()
        return table
    }
}

/// ADD_MEM_REG and REM_MEM_REG carry one region behind 8 bytes of padding (vhost-user.rst
/// "Single memory region description"; QEMU `VhostUserMemRegMsg`): 40 bytes.
package enum VhostUserSingleRegion {
    package static let byteCount = 8 + VhostUserMemoryRegion.byteCount

    package static func encode(_ region: VhostUserMemoryRegion) -> [UInt8] {
        var w = VhostUserWriter(capacity: byteCount)
        w.u64(0)
        region.append(to: &w)
        return w.bytes
    }

    package static func decode(_ payload: [UInt8]) throws(VhostUserProtocolError) -> VhostUserMemoryRegion {
        var r = VhostUserReader(payload)
        r.skip(8)   // padding: ignored
        let region = VhostUserMemoryRegion(from: &r)
        try region.validate()
        return region
    }
}
