/// A block of page-aligned, zeroed host memory that a guest sees at `guestBase`.
///
/// Used for in-process exchanges (tests, the in-process demo, the ring benchmark). The
/// cross-process transport maps shared memfd regions instead; both end up as a
/// ``HostRange`` behind a translator.
public final class GuestMemoryRegion: @unchecked Sendable {
    /// The bytes of the region (valid for the region's lifetime).
    public let range: HostRange
    /// The guest-physical address of the first byte.
    public let guestBase: UInt64
    /// The size in bytes.
    public var size: Int { range.count }

    /// The page size the region is aligned to.
    public static let pageSize = 4096

    /// Allocates `size` zeroed bytes (rounded up to whole pages) seen by the guest at `guestBase`.
    public init(size: Int, guestBase: UInt64 = 0) {
        precondition(size > 0)
        let rounded = (size + Self.pageSize - 1) & ~(Self.pageSize - 1)
        let base = UnsafeMutableRawPointer.allocate(byteCount: rounded, alignment: Self.pageSize)
        base.initializeMemory(as: UInt8.self, repeating: 0, count: rounded)
        range = HostRange(unsafeBase: base, count: rounded)
        self.guestBase = guestBase
    }

    deinit { range.base.deallocate() }

    /// The guest-physical translator over this region. The region must outlive it.
    public var identityTranslator: IdentityTranslator { IdentityTranslator(region: range, guestBase: guestBase) }

    /// The host bytes behind `[address, address + count)`, or `nil` if outside the region.
    public func hostRange(at address: UInt64, count: Int) -> HostRange? {
        try? identityTranslator.translate(address, length: count, access: .read)
    }

    /// Writes `bytes` at guest address `address`.
    public func write(_ bytes: some Collection<UInt8>, at address: UInt64) {
        guard let r = hostRange(at: address, count: bytes.count) else { preconditionFailure("write outside region") }
        Array(bytes).withUnsafeBytes { _ = r.copyBytes(from: $0) }
    }

    /// Reads `count` bytes at guest address `address`.
    public func read(at address: UInt64, count: Int) -> [UInt8] {
        guard let r = hostRange(at: address, count: count) else { preconditionFailure("read outside region") }
        // No zero-capacity initializer: it writes the count into the shared empty-array storage.
        guard count > 0 else { return [] }
        return [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            initialized = r.copyBytes(into: UnsafeMutableRawBufferPointer(buffer))
        }
    }
}

/// A bump allocator of guest addresses inside a region, for laying out rings and buffers.
public struct GuestAddressAllocator: Sendable {
    public private(set) var next: UInt64
    public let end: UInt64

    public init(region: GuestMemoryRegion) {
        next = region.guestBase
        end = region.guestBase + UInt64(region.size)
    }

    public init(start: UInt64, end: UInt64) {
        next = start
        self.end = end
    }

    /// Reserves `size` bytes aligned to `alignment` (a power of 2) and returns their address.
    public mutating func allocate(_ size: Int, alignment: Int = 16) -> UInt64 {
        let a = UInt64(alignment)
        let start = (next + a - 1) & ~(a - 1)
        precondition(start + UInt64(size) <= end, "guest region exhausted")
        next = start + UInt64(size)
        return start
    }
}
