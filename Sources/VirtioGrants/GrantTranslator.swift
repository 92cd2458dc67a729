import VirtioCore

/// The grant-handle translator: device-visible addresses are grant handles (bit 63, reference,
/// page offset; ``GrantHandle``), resolved through a per-queue ``GrantIOTLB``.
///
/// A hit costs a decode, one cache line and three comparisons, with no lock and no call into
/// the mapper; a miss maps the grant (checking the entry as ``GrantMapper/map(_:access:)``
/// does) and caches the mapping. An access that crosses a page continues in the next
/// reference: the result is the first page's part, extended over following pages only when
/// their frames are contiguous in host memory. Faults are counted per IOTLB (per queue).
@frozen
public struct GrantTranslator: MemoryTranslator, @unchecked Sendable {
    @usableFromInline let entries: UnsafeMutablePointer<IOTLBEntry>
    @usableFromInline let shift: UInt32
    @usableFromInline let counters: UnsafeMutablePointer<UInt64>
    @usableFromInline let iotlb: Unmanaged<GrantIOTLB>

    @usableFromInline let parkingHighWater: UInt64

    init(iotlb: GrantIOTLB) {
        entries = iotlb.entries
        shift = iotlb.shift
        counters = iotlb.counters
        parkingHighWater = iotlb.parkingHighWater
        self.iotlb = Unmanaged.passUnretained(iotlb)
    }

    /// GHT-DMA-03: half the IOTLB's parking list holds mappings evicted under chains in flight;
    /// the queue ends its batch at the next chain boundary so that they can be released.
    @inlinable
    public var wantsQuiescentPoint: Bool { counters[GrantIOTLB.parkedNow] >= parkingHighWater }

    @inlinable
    public func resolve(_ address: UInt64, length: Int, access: MemoryAccess) -> TranslationResult {
        let ref = (address & ~GrantHandle.marker) &>> 12
        let offset = Int(truncatingIfNeeded: address & 0xFFF)
        let e = entries[GrantIOTLB.slot(ref, shift: shift)]
        // One comparison checks the marker bit and the tag (a reference above 2^32 - 2 never matches).
        let permission: UInt32 = access == .write ? 2 : 1
        if _fastPath(address & GrantHandle.marker != 0 && UInt64(e.tag) == ref &+ 1 && e.permissions & permission != 0
                     && length <= GrantHandle.pageSize &- offset && length >= 0) {
            counters[0] &+= 1
            return .success(HostRange(unsafeAddress: e.page &+ UInt(offset), count: length))
        }
        return resolveSlowly(address, length: length, access: access)
    }

    /// Misses, page crossings and faults.
    @usableFromInline @inline(never)
    func resolveSlowly(_ address: UInt64, length: Int, access: MemoryAccess) -> TranslationResult {
        let iotlb = self.iotlb.takeUnretainedValue()
        let handle = GrantHandle(rawValue: address)
        guard handle.isGrantHandle, length >= 0 else {
            iotlb.countFault(.malformedHandle)
            return .failure(.malformedHandle)
        }
        guard let first = handle.reference, first.rawValue < UInt32.max else {
            iotlb.countFault(.notGranted)
            return .failure(.notGranted)
        }
        let offset = handle.offset
        let firstPage: UInt
        switch page(first, access, iotlb) {
        case .success(let p): firstPage = p
        case .failure(let fault):
            let kind = Self.kind(of: fault)
            iotlb.countFault(kind)
            return .failure(kind)
        }
        var contiguous = GrantHandle.pageSize - offset
        if contiguous >= length {
            return .success(HostRange(unsafeAddress: firstPage &+ UInt(offset), count: length))
        }
        // Crossing a page: continue into the next references while their pages follow in host
        // memory; otherwise return the first part and let the caller continue.
        var ref = first
        var expected = firstPage &+ UInt(GrantHandle.pageSize)
        while contiguous < length && ref.rawValue < UInt32.max - 1 {
            ref = ref.advanced(by: 1)
            guard case .success(let p) = page(ref, access, iotlb), p == expected else { break }
            contiguous += GrantHandle.pageSize
            expected &+= UInt(GrantHandle.pageSize)
        }
        return .success(HostRange(unsafeAddress: firstPage &+ UInt(offset), count: min(contiguous, length)))
    }

    /// The host page of `ref` for `access`, from the cache or by mapping it.
    func page(_ ref: GrantReference, _ access: MemoryAccess, _ iotlb: GrantIOTLB) -> Result<UInt, GrantFault> {
        let e = entries[GrantIOTLB.slot(UInt64(ref.rawValue), shift: shift)]
        let permission: UInt32 = access == .write ? 2 : 1
        if e.tag == ref.rawValue &+ 1 && e.permissions & permission != 0 {
            counters[0] &+= 1
            return .success(e.page)
        }
        return Result { () throws(GrantFault) in try iotlb.fill(ref, access: access) }
    }

    /// The translation fault a grant fault becomes.
    public static func kind(of fault: GrantFault) -> TranslationFault.Kind {
        switch fault {
        case .badReference, .notGranted, .unsupported, .contended, .notMapped, .badCopy: return .notGranted
        case .wrongDomain: return .wrongDomain
        case .readOnly: return .readOnly
        case .frameOutOfRange: return .frameOutOfRange
        case .revoked: return .revoked
        case .tooManyMappings, .inFlightLimit: return .exhausted
        }
    }
}
