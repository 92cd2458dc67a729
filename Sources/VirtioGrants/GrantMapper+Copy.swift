import VirtioCore

extension GrantMapper {
    /// Copies between a granted page and local memory without keeping a mapping (Xen
    /// `GNTTABOP_copy` with one grant side): the page is mapped for the copy's direction,
    /// copied, and unmapped. A zero-length fragment succeeds without touching the grant; a
    /// fragment that leaves the page is refused (``GrantFault/badCopy(_:offset:length:)``).
    public func copy(_ op: GrantCopy) throws(GrantFault) {
        let length = op.length
        guard length > 0 else { return }
        guard op.offset >= 0, op.offset < GrantHandle.pageSize, length <= GrantHandle.pageSize - op.offset else {
            throw .badCopy(op.reference, offset: op.offset, length: length)
        }
        let access: MemoryAccess
        switch op.direction {
        case .fromGrant: access = .read
        case .toGrant: access = .write
        }
        let mapping = try map(op.reference, access: access)
        let page = mapping.page
        switch op.direction {
        case .fromGrant(let destination): _ = page.copyBytes(from: op.offset, into: destination)
        case .toGrant(let source): _ = page.copyBytes(to: op.offset, from: source)
        }
        try unmap(mapping)
    }

    /// Copies every fragment independently, with a result per element.
    public func copy(batch: [GrantCopy]) -> [Result<Void, GrantFault>] {
        batch.map { op in Result { () throws(GrantFault) in try copy(op) } }
    }

    /// Copies `destination.count` bytes starting at `handle` into local memory, continuing into
    /// the next reference at each page boundary (each page must be granted).
    public func copy(from handle: GrantHandle, into destination: UnsafeMutableRawBufferPointer) throws(GrantFault) {
        try forEachFragment(handle, destination.count) { (ref, offset, done, n) throws(GrantFault) in
            try copy(GrantCopy(ref, offset: offset, .fromGrant(UnsafeMutableRawBufferPointer(rebasing: destination[done..<(done + n)]))))
        }
    }

    /// Copies `source` into granted memory starting at `handle`, continuing across pages.
    public func copy(to handle: GrantHandle, from source: UnsafeRawBufferPointer) throws(GrantFault) {
        try forEachFragment(handle, source.count) { (ref, offset, done, n) throws(GrantFault) in
            try copy(GrantCopy(ref, offset: offset, .toGrant(UnsafeRawBufferPointer(rebasing: source[done..<(done + n)]))))
        }
    }

    private func forEachFragment(_ handle: GrantHandle, _ length: Int,
                                 _ body: (GrantReference, Int, Int, Int) throws(GrantFault) -> Void) throws(GrantFault) {
        guard handle.isGrantHandle, let first = handle.reference else { throw .badReference(GrantReference(UInt32.max)) }
        var done = 0
        var offset = handle.offset
        var ref = first
        while done < length {
            let n = min(length - done, GrantHandle.pageSize - offset)
            try body(ref, offset, done, n)
            done += n
            offset = 0
            guard ref.rawValue < UInt32.max else { throw .badReference(ref) }
            ref = ref.advanced(by: 1)
        }
        _ = self
    }
}
