import VirtioCore

/// A per-queue cache of IOVA page translations, valid for one generation of its space.
public final class IOVACache: @unchecked Sendable {
    public let space: IOVASpace
    public let capacity: Int
    @usableFromInline let entries: UnsafeMutablePointer<Entry>
    @usableFromInline let counters: UnsafeMutablePointer<UInt64>   // hits, misses, faults

    @frozen @usableFromInline
    struct Entry {
        /// IOVA page number + 1 (0: empty).
        @usableFromInline var tag: UInt64
        @usableFromInline var generation: UInt64
        @usableFromInline var host: UInt      // host address of the page's first byte
        @usableFromInline var permissions: UInt8
        /// Bytes of the mapping from the page start (at most the page).
        @usableFromInline var extent: UInt32
    }

    public init(space: IOVASpace, capacity: Int = 256) {
        var size = 1
        while size < max(capacity, 1) { size <<= 1 }
        self.space = space
        self.capacity = size
        entries = .allocate(capacity: size)
        entries.initialize(repeating: Entry(tag: 0, generation: 0, host: 0, permissions: 0, extent: 0), count: size)
        counters = .allocate(capacity: 3)
        counters.initialize(repeating: 0, count: 3)
    }

    deinit {
        entries.deallocate()
        counters.deallocate()
    }

    /// The translator for the ring code. The cache must outlive every copy.
    public var translator: IOVATranslator { IOVATranslator(cache: self) }

    public var hits: UInt64 { counters[0] }
    public var misses: UInt64 { counters[1] }
    public var faults: UInt64 { counters[2] }
}

/// The IOVA translator: device-visible addresses are I/O virtual addresses resolved through an
/// ``IOVASpace`` (vhost-user IOTLB mode), with a per-queue page cache that is discarded
/// whenever the space changes. An unmapped address is a ``TranslationFault/Kind/notMapped``
/// fault and is recorded for the transport to report as a miss.
@frozen
public struct IOVATranslator: MemoryTranslator, @unchecked Sendable {
    @usableFromInline let entries: UnsafeMutablePointer<IOVACache.Entry>
    @usableFromInline let mask: UInt64
    @usableFromInline let counters: UnsafeMutablePointer<UInt64>
    @usableFromInline let cache: Unmanaged<IOVACache>

    init(cache: IOVACache) {
        entries = cache.entries
        mask = UInt64(cache.capacity - 1)
        counters = cache.counters
        self.cache = Unmanaged.passUnretained(cache)
    }

    @inlinable
    public func resolve(_ address: UInt64, length: Int, access: MemoryAccess) -> TranslationResult {
        let page = address &>> 12
        let e = entries[Int(truncatingIfNeeded: page & mask)]
        let offset = UInt32(truncatingIfNeeded: address & 0xFFF)
        if _fastPath(e.tag == page &+ 1 && e.permissions & access.rawValue != 0 && length >= 0
                     && UInt64(length) <= UInt64(e.extent &- min(offset, e.extent))
                     && e.generation == cache._withUnsafeGuaranteedRef({ $0.space.generation })) {
            counters[0] &+= 1
            return .success(HostRange(unsafeAddress: e.host &+ UInt(offset), count: length))
        }
        return resolveSlowly(address, length: length, access: access)
    }

    @usableFromInline @inline(never)
    func resolveSlowly(_ address: UInt64, length: Int, access: MemoryAccess) -> TranslationResult {
        let cache = self.cache.takeUnretainedValue()
        let space = cache.space
        guard length >= 0 else { return .failure(.outOfRange) }
        let generation = space.generation
        guard let found = space.lookup(address, access: access) else {
            counters[2] &+= 1
            if space.isMapped(address) { return .failure(.permissionDenied) }
            return space.recordMiss(address, access: access) ? .failure(.notMapped) : .failure(.missUnanswered)
        }
        counters[1] &+= 1
        // Cache the page this address is in (the part of it the range covers).
        let pageStart = address & ~0xFFF
        let offset = address - pageStart
        if found.available >= 1 && offset < 4096 {
            let extent = UInt32(min(UInt64(4096), offset &+ found.available))
            let e = IOVACache.Entry(tag: (address >> 12) &+ 1, generation: generation, host: found.host &- UInt(offset),
                                    permissions: access.rawValue, extent: extent)
            // Only the permission just proven is cached; the other is looked up on demand.
            entries[Int(truncatingIfNeeded: (address >> 12) & mask)] = e
        }
        let count = found.available == 0 ? length : Int(min(UInt64(length), found.available))
        return .success(HostRange(unsafeAddress: found.host, count: count))
    }
}
