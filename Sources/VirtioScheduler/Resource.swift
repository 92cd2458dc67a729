/// What kind of thing a claim in the ``ResourceLedger`` is about. Each kind has its own number
/// space: queue 3 and eventfd 3 never conflict, two memory regions that share one byte do.
public enum ResourceKind: String, Sendable, CaseIterable {
    /// A virtual function of the shared device, by index.
    case virtualFunction
    /// A virtqueue, by its back-end-wide number (not a guest's queue index).
    case queue
    /// A run of grant references.
    case grantReferences
    /// A range of memory, by address, in the back-end's address space.
    case memoryRegion
    /// An eventfd doorbell, by the number the back-end gave it.
    case eventfd

    /// The place of the kind in dumps and in ``Resource``'s order: the declaration order.
    var order: Int {
        switch self {
        case .virtualFunction: 0
        case .queue: 1
        case .grantReferences: 2
        case .memoryRegion: 3
        case .eventfd: 4
        }
    }
}

/// A range of one kind of thing the back-end hands out: what the ledger records an owner,
/// shares and uses for. A single VF, queue or eventfd is a range of one.
///
/// The convenience constructors never trap: a value that cannot be a range (a negative VF
/// index, a region running past 2^64) gives an empty range, which every ledger operation refuses
/// with ``LedgerError/emptyRange(_:)``; the mistake is reported where the ledger is asked, not
/// in whoever built the value.
public struct Resource: Hashable, Sendable, Comparable, CustomStringConvertible {
    public let kind: ResourceKind
    public let range: Range<UInt64>

    public init(kind: ResourceKind, range: Range<UInt64>) {
        self.kind = kind
        self.range = range
    }

    /// Virtual function `index` of the device.
    public static func virtualFunction(_ index: Int) -> Resource {
        Resource(kind: .virtualFunction, range: unit(UInt64(exactly: index)))
    }

    /// Queue `number`, numbered across the whole back-end so that two guests' queue 0 are
    /// different resources.
    public static func queue(_ number: UInt64) -> Resource {
        Resource(kind: .queue, range: unit(number))
    }

    /// `count` grant references from `first` (empty when `count` is 0).
    public static func grantReferences(first: UInt32, count: UInt32) -> Resource {
        let start = UInt64(first)
        return Resource(kind: .grantReferences, range: start..<(start + UInt64(count)))
    }

    /// `length` bytes from `start` (empty when `length` is 0 or the end would pass 2^64).
    public static func memoryRegion(start: UInt64, length: UInt64) -> Resource {
        let (end, overflow) = start.addingReportingOverflow(length)
        return Resource(kind: .memoryRegion, range: overflow ? start..<start : start..<end)
    }

    /// Eventfd doorbell `number`.
    public static func eventfd(_ number: UInt64) -> Resource {
        Resource(kind: .eventfd, range: unit(number))
    }

    /// The range of one, or an empty one when there is no such unit.
    private static func unit(_ number: UInt64?) -> Range<UInt64> {
        guard let number, number < .max else { return 0..<0 }
        return number..<(number + 1)
    }

    /// Whether the two conflict: the same kind and at least one unit in common.
    public func overlaps(_ other: Resource) -> Bool {
        kind == other.kind && range.overlaps(other.range)
    }

    /// Whether every unit of `other` is a unit of this one (a use of part of a claim).
    public func covers(_ other: Resource) -> Bool {
        kind == other.kind && !other.range.isEmpty
            && range.lowerBound <= other.range.lowerBound && other.range.upperBound <= range.upperBound
    }

    /// Kind (in declaration order), then start, then end: the order of dumps and reports.
    public static func < (a: Resource, b: Resource) -> Bool {
        if a.kind != b.kind { return a.kind.order < b.kind.order }
        if a.range.lowerBound != b.range.lowerBound { return a.range.lowerBound < b.range.lowerBound }
        return a.range.upperBound < b.range.upperBound
    }

    /// `queue[3]` for a unit, `grantReferences[8..<16]`; memory addresses in hex.
    public var description: String {
        func number(_ n: UInt64) -> String { kind == .memoryRegion ? "0x" + String(n, radix: 16) : String(n) }
        let unit = range.upperBound - range.lowerBound == 1 && kind != .memoryRegion && kind != .grantReferences
        let text = unit ? number(range.lowerBound) : number(range.lowerBound) + "..<" + number(range.upperBound)
        return "\(kind.rawValue)[\(text)]"
    }
}
