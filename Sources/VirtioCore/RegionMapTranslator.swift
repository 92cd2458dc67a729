/// A region of guest memory: `[start, start + range.count)` in some address space (guest
/// physical addresses, or the front-end's user addresses in vhost-user) backed by host bytes.
@frozen
public struct MappedRegion: Sendable {
    /// The first address of the region in its address space.
    public let start: UInt64
    /// The host bytes.
    public let range: HostRange
    /// Whether the device may write the region. A region mapped read-only (a file its owner
    /// sealed against writes, Spec/hostile-peers.md GHT-HBE-03) is not: a write into it is a
    /// ``TranslationFault/Kind/readOnly`` fault, never a store into a read-only page.
    public let writable: Bool

    public init(start: UInt64, range: HostRange, writable: Bool = true) {
        self.start = start
        self.range = range
        self.writable = writable
    }

    /// One past the last address; `nil` when the region reaches the top of the 64-bit space.
    public var end: UInt64? {
        let (e, o) = start.addingReportingOverflow(UInt64(range.count))
        return o ? nil : e
    }
}

/// Why a region map could not be built.
public enum RegionMapError: Error, Hashable, Sendable {
    /// Two regions share addresses.
    case overlapping(UInt64, UInt64)
    /// A region's end overflows the 64-bit space, or it is empty.
    case invalidRegion(UInt64, size: Int)
    /// More regions than the map holds.
    case tooManyRegions(Int)
}

/// The guest-physical translator over several regions (a vhost-user memory table: up to 8
/// regions, or more with CONFIGURE_MEM_SLOTS). A lookup is a scan of a small sorted array;
/// an access that runs past a region's end is returned in part, and the caller continues at the
/// next address, which may lie in the next region.
@frozen
public struct RegionMapTranslator: MemoryTranslator, @unchecked Sendable {
    @usableFromInline let starts: [UInt64]
    @usableFromInline let sizes: [UInt64]
    @usableFromInline let bases: [UInt]
    /// Per region, whether it is read-only; empty when every region is writable (the common
    /// case pays one test of `isEmpty` per write).
    @usableFromInline let readOnly: [Bool]

    /// The most regions a map holds (vhost-user's largest memory-slot count).
    public static let maximumRegions = 509

    /// A map of `regions`, which must not overlap.
    public init(regions: [MappedRegion]) throws(RegionMapError) {
        guard regions.count <= Self.maximumRegions else { throw .tooManyRegions(regions.count) }
        let sorted = regions.sorted { $0.start < $1.start }
        for r in sorted where r.range.count == 0 || r.end == nil { throw .invalidRegion(r.start, size: r.range.count) }
        for (a, b) in zip(sorted, sorted.dropFirst()) where a.end! > b.start { throw .overlapping(a.start, b.start) }
        starts = sorted.map(\.start)
        sizes = sorted.map { UInt64($0.range.count) }
        bases = sorted.map(\.range.startAddress)
        readOnly = sorted.allSatisfy(\.writable) ? [] : sorted.map { !$0.writable }
    }

    /// The number of regions.
    public var regionCount: Int { starts.count }

    @inlinable
    public func resolve(_ address: UInt64, length: Int, access: MemoryAccess) -> TranslationResult {
        guard length >= 0 else { return .failure(.outOfRange) }
        // The last region that starts at or below the address (regions are sorted).
        var lo = 0, hi = starts.count
        while lo < hi {
            let mid = (lo &+ hi) &>> 1
            if starts[mid] <= address { lo = mid &+ 1 } else { hi = mid }
        }
        guard lo > 0 else { return .failure(.outOfRange) }
        let i = lo &- 1
        let offset = address &- starts[i]
        guard offset < sizes[i] || (length == 0 && offset == sizes[i]) else { return .failure(.outOfRange) }
        if access == .write && !readOnly.isEmpty && readOnly[i] { return .failure(.readOnly) }
        let available = sizes[i] &- offset
        let count = UInt64(length) <= available ? length : Int(truncatingIfNeeded: available)
        return .success(HostRange(unsafeAddress: bases[i] &+ UInt(truncatingIfNeeded: offset), count: count))
    }
}
