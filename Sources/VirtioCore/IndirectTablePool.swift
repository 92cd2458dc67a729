/// A driver's pool of indirect descriptor tables (VIRTIO 1.2 §2.7.5.3), allocated once in
/// memory the device can reach.
///
/// Tables are fixed-size slots in one block; the driver takes one per indirect chain and
/// returns it when the chain is used. In grant mode the block is granted read-only once
/// (H3: the device only reads indirect tables), so no grant is made per request.
public struct IndirectTablePool: @unchecked Sendable {
    /// The device-visible address of the block.
    public let deviceAddress: UInt64
    /// The number of tables.
    public let tableCount: Int
    /// The entries each table holds.
    public let entriesPerTable: Int
    @usableFromInline let block: HostRange
    @usableFromInline let storage: UnsafeAllocation
    @usableFromInline let freeStack: UnsafeMutablePointer<UInt16>
    @usableFromInline var freeCount: Int

    /// A pool of `tableCount` tables of `entriesPerTable` descriptors in `block`, which the
    /// device sees at `deviceAddress`.
    public init(block: HostRange, deviceAddress: UInt64, tableCount: Int, entriesPerTable: Int) {
        precondition(tableCount > 0 && tableCount <= Int(UInt16.max) && entriesPerTable > 0)
        precondition(block.count >= tableCount * entriesPerTable * Descriptor.size, "block too small for the pool")
        self.block = block
        self.deviceAddress = deviceAddress
        self.tableCount = tableCount
        self.entriesPerTable = entriesPerTable
        storage = UnsafeAllocation(byteCount: tableCount * 2)
        freeStack = storage.carve(UInt16.self, at: 0, count: tableCount)
        for i in 0..<tableCount { freeStack[i] = UInt16(tableCount - 1 - i) }
        freeCount = tableCount
    }

    /// The bytes a pool of this shape needs.
    public static func byteCount(tableCount: Int, entriesPerTable: Int) -> Int {
        tableCount * entriesPerTable * Descriptor.size
    }

    /// Tables currently free.
    @inlinable
    public var availableCount: Int { freeCount }

    @inlinable
    mutating func take() -> Int? {
        guard freeCount > 0 else { return nil }
        freeCount &-= 1
        return Int(freeStack[freeCount])
    }

    /// The table ``take()`` would return next.
    @inlinable
    func peek() -> Int { Int(freeStack[freeCount &- 1]) }

    @inlinable
    mutating func give(_ table: Int) {
        precondition(freeCount < tableCount)
        freeStack[freeCount] = UInt16(table)
        freeCount &+= 1
    }

    @inlinable
    func table(_ index: Int) -> UnsafeDescriptorTable {
        UnsafeDescriptorTable(block.slice(offset: index &* entriesPerTable &* Descriptor.size, length: entriesPerTable &* Descriptor.size))
    }

    @inlinable
    func address(_ index: Int) -> UInt64 { deviceAddress &+ UInt64(index &* entriesPerTable &* Descriptor.size) }
}

extension ChainLayout {
    /// Whether a chain of `total` (at least 2 for `.automatic`) segments goes through an
    /// indirect table from `pool` (nil when INDIRECT_DESC is not negotiated or no pool was
    /// given); throws when `.indirect` was asked for and cannot be had (IND-DRV-01,
    /// PKD-IND-01).
    @inlinable @inline(__always)
    func placesIndirect(total: Int, pool: IndirectTablePool?) throws(DriverQueueError) -> Bool {
        switch self {
        case .direct:
            return false
        case .automatic:
            guard total > 1, let pool else { return false }
            return pool.availableCount > 0 && total <= pool.entriesPerTable
        case .indirect:
            guard let pool else { throw .indirectUnavailable }
            guard total <= pool.entriesPerTable else { throw .chainTooLong(segments: total, limit: pool.entriesPerTable) }
            guard pool.availableCount > 0 else { throw .queueFull }
            return true
        }
    }
}
