import Synchronization
import VirtioCore

/// The grant table in shared memory: the unsafe core that reads and writes entries.
///
/// A mapper reads an entry as one 64-bit atomic load, so every decision is taken on a single
/// snapshot; both sides change the flags with a 32-bit compare-and-swap of flags and domid
/// together, so a map and an end-of-access that race on one entry cannot both succeed.
///
/// Invariants: `range` is 8-byte aligned (checked at `init`) and stays mapped while the view
/// is used (the owner of the mapping keeps it, as for every ``HostRange``); every entry access
/// is bounds-checked against `count` before a pointer is formed; entries are reached only as
/// `Atomic<UInt64>` (the whole entry) or `Atomic<UInt32>` (flags and domid), never as plain
/// loads, because the peer writes them concurrently.
@frozen
public struct UnsafeGrantTable: @unchecked Sendable {
    /// The table's bytes: the one place its address is held (no pointer is taken out of it).
    @usableFromInline let range: HostRange
    /// The number of entries.
    public let count: Int

    /// A view of the entries in `range` (8-byte aligned).
    public init(_ range: HostRange) {
        precondition(range.isAligned(to: 8), "a grant table must be 8-byte aligned")
        self.range = range
        count = range.count / GrantEntry.size
    }

    /// Entry `ref` as one atomic word. `ref` is below `count`.
    @inlinable
    func word(_ ref: Int) -> UnsafeMutablePointer<Atomic<UInt64>> {
        (range.base + ref &* GrantEntry.size).assumingMemoryBound(to: Atomic<UInt64>.self)
    }

    /// Entry `ref`'s flags and domid as one atomic word. `ref` is below `count`.
    @inlinable
    func header(_ ref: Int) -> UnsafeMutablePointer<Atomic<UInt32>> {
        (range.base + ref &* GrantEntry.size).assumingMemoryBound(to: Atomic<UInt32>.self)
    }

    /// One acquire load of the whole entry.
    @inlinable
    public func load(_ ref: GrantReference) -> GrantEntry {
        precondition(Int(ref.rawValue) < count)
        return GrantEntry(word: word(Int(ref.rawValue)).pointee.load(ordering: .acquiring))
    }

    /// Publishes a whole entry with release ordering (the granter writes domid and frame
    /// before the flags become visible, Xen's publication rule).
    @inlinable
    public func store(_ entry: GrantEntry, at ref: GrantReference) {
        precondition(Int(ref.rawValue) < count)
        word(Int(ref.rawValue)).pointee.store(entry.word, ordering: .releasing)
    }

    /// Replaces flags and domid if they still equal `expected`'s; returns the value found.
    @inlinable
    func compareExchangeHeader(_ ref: GrantReference, expected: GrantEntry, desired: GrantEntry) -> (exchanged: Bool, found: GrantEntry) {
        let r = header(Int(ref.rawValue)).pointee.compareExchange(expected: expected.header, desired: desired.header,
                                                                  ordering: .acquiringAndReleasing)
        let h = UInt32(littleEndian: r.original)
        return (r.exchanged, GrantEntry(flags: GrantFlags(rawValue: UInt16(truncatingIfNeeded: h)),
                                        domain: DomainID(UInt16(truncatingIfNeeded: h &>> 16)), frame: expected.frame))
    }
}
