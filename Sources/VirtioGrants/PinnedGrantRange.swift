import VirtioCore

/// A range of granted memory held mapped for a long time, contiguous in host memory: the
/// areas of a ring (translated once when the queue is enabled, DESIGN §5). The mappings are
/// released by ``release()`` or when the value is freed.
public final class PinnedGrantRange: @unchecked Sendable {
    /// The host bytes of the range.
    public let range: HostRange
    /// The device-visible start.
    public let handle: GrantHandle
    private let mapper: GrantMapper
    private var mappings: [GrantMapping]

    /// Maps every page of `[handle, handle + length)` (consecutive references) for `access`.
    /// The pages must follow each other in host memory (consecutive frames), since the range
    /// is read through plain pointers.
    public init(mapper: GrantMapper, handle: GrantHandle, length: Int, access: MemoryAccess) throws(TranslationFault) {
        self.mapper = mapper
        self.handle = handle
        let fault = { (kind: TranslationFault.Kind) in TranslationFault(kind, address: handle.rawValue, length: length, access: access) }
        guard handle.isGrantHandle, let first = handle.reference, length > 0 else { throw fault(.malformedHandle) }
        let pages = handle.pageCount(length: length)
        guard UInt64(first.rawValue) + UInt64(pages) <= UInt64(UInt32.max) else { throw fault(.notGranted) }
        var mapped: [GrantMapping] = []
        for k in 0..<pages {
            let m: GrantMapping
            do {
                m = try mapper.map(first.advanced(by: k), access: access)
            } catch {
                for m in mapped { try? mapper.unmap(m) }
                throw fault(GrantTranslator.kind(of: error))
            }
            mapped.append(m)
            if k > 0 && m.pageAddress != mapped[0].pageAddress + UInt(k * GrantHandle.pageSize) {
                for m in mapped { try? mapper.unmap(m) }
                throw fault(.notContiguous)
            }
        }
        mappings = mapped
        // The pages were checked to follow each other: one range spans them.
        range = HostRange(unsafeAddress: mapped[0].pageAddress, count: pages * GrantHandle.pageSize)
            .slice(offset: handle.offset, length: length)
    }

    /// Unmaps the pages (idempotent).
    public func release() {
        for m in mappings { try? mapper.unmap(m) }
        mappings.removeAll()
    }

    deinit { release() }
}

extension GrantHandle {
    /// Whether this handle, as a device-visible address, is a multiple of `alignment`.
    @inlinable
    public func isAligned(to alignment: Int) -> Bool { rawValue & UInt64(alignment - 1) == 0 }
}
