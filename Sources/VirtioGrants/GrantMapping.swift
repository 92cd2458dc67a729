import VirtioCore

/// A live mapping of one granted page, made by ``GrantMapper/map(_:access:)`` and ended by
/// ``GrantMapper/unmap(_:)`` (Xen's grant handle: an index into the mapper's own maptrack, so
/// an unmap names exactly one mapping and a second unmap of it is refused, never counted twice).
@frozen
public struct GrantMapping: Hashable, Sendable {
    public let reference: GrantReference
    public let access: MemoryAccess
    /// The maptrack slot and its generation.
    @usableFromInline let slot: UInt32
    @usableFromInline let generation: UInt32
    /// The page's host address, as a number (the bytes are reached through ``GrantMapper``).
    @usableFromInline let pageAddress: UInt

    @inlinable
    init(reference: GrantReference, access: MemoryAccess, slot: UInt32, generation: UInt32, pageAddress: UInt) {
        self.reference = reference
        self.access = access
        self.slot = slot
        self.generation = generation
        self.pageAddress = pageAddress
    }

    /// The 4 KiB page, for as long as the mapping lives.
    @inlinable
    public var page: HostRange {
        HostRange(unsafeAddress: pageAddress, count: GrantHandle.pageSize)
    }
}

/// One element of a batched map.
@frozen
public struct GrantMapRequest: Hashable, Sendable {
    public var reference: GrantReference
    public var access: MemoryAccess
    public init(_ reference: GrantReference, access: MemoryAccess) {
        self.reference = reference
        self.access = access
    }
}

/// One element of a batched copy (Xen `gnttab_copy` with one side a grant): `length` bytes at
/// `offset` in the granted page, to or from local memory. A fragment may not cross the page.
public struct GrantCopy {
    public enum Direction {
        /// From the granted page into local memory (a read of the grant).
        case fromGrant(UnsafeMutableRawBufferPointer)
        /// From local memory into the granted page (a write of the grant).
        case toGrant(UnsafeRawBufferPointer)
    }

    public var reference: GrantReference
    public var offset: Int
    public var direction: Direction

    public init(_ reference: GrantReference, offset: Int, _ direction: Direction) {
        self.reference = reference
        self.offset = offset
        self.direction = direction
    }

    var length: Int {
        switch direction {
        case .fromGrant(let b): return b.count
        case .toGrant(let b): return b.count
        }
    }
}

