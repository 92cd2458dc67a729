import Synchronization
import VirtioCore

/// Access rights of an IOVA mapping (vhost-user `VHOST_ACCESS_RO/WO/RW`: 1, 2, 3).
@frozen
public struct IOVAPermissions: OptionSet, Hashable, Sendable {
    public var rawValue: UInt8
    @inlinable public init(rawValue: UInt8) { self.rawValue = rawValue }
    @inlinable public static var read: IOVAPermissions { IOVAPermissions(rawValue: 1) }
    @inlinable public static var write: IOVAPermissions { IOVAPermissions(rawValue: 2) }
    @inlinable public static var readWrite: IOVAPermissions { [.read, .write] }

    @inlinable
    public func allows(_ access: MemoryAccess) -> Bool { rawValue & access.rawValue != 0 }
}

/// Why an IOTLB update was refused.
public enum IOVAError: Error, Hashable, Sendable {
    /// A zero-sized range, or one whose end overflows 64 bits.
    case invalidRange(iova: UInt64, size: UInt64)
    /// The host bytes given do not match the size.
    case sizeMismatch(iova: UInt64, size: UInt64, host: Int)
    /// No permission given.
    case noPermission(iova: UInt64)
    /// The map holds its maximum number of ranges.
    case full
}

/// An address space of I/O virtual addresses (the vhost-user IOTLB mode): ranges of IOVAs
/// mapped to host memory with permissions, fed by update and invalidate messages from the
/// front-end's IOMMU. Thread-safe: the control plane updates it while queue workers translate.
///
/// An update replaces whatever it overlaps (the front-end's IOMMU is the authority and an
/// IOTLB is a cache); an invalidation removes the covered parts of ranges, splitting a range
/// it covers only partly. Every change bumps ``generation``, which the translators' caches
/// check on each lookup, so no stale translation survives an invalidation. Addresses that miss
/// are recorded, coalesced per page and bounded, for the transport to report as IOTLB misses.
public final class IOVASpace: @unchecked Sendable {
    struct Range {
        var start: UInt64
        var end: UInt64            // exclusive
        var host: UInt             // host address of `start`
        var permissions: IOVAPermissions
        /// The front-end's user address of `start`, when the update named one: what the range
        /// is bound to again when the memory behind it changes (``rebind(_:)``).
        var userAddress: UInt64?

        /// The part `[from, to)` of this range (`to` 0 means 2^64), host and user addresses moved along.
        func slice(from: UInt64, to: UInt64) -> Range {
            let delta = from &- start
            return Range(start: from, end: to, host: host &+ UInt(delta), permissions: permissions,
                         userAddress: userAddress.map { $0 &+ delta })
        }
    }

    struct State {
        var ranges: [Range] = []   // sorted by start, non-overlapping
        var misses: [(page: UInt64, access: MemoryAccess)] = []
        /// When each page still unmapped was first and last reported, in monotonic
        /// nanoseconds (GHT-IOVA-07).
        var reports: [UInt64: (first: UInt64, last: UInt64)] = [:]
        var droppedMisses = 0
    }

    private let state = Locked(State())
    /// Bumped on every change.
    let generationCounter = Atomic<UInt64>(1)
    /// The most ranges the space holds.
    public let capacity: Int
    /// The most distinct pending misses kept (failure mode: unbounded miss growth).
    public let missCapacity: Int

    /// How long a page may stay missing after its first report before the space stops
    /// asking: a front-end that cannot translate an address (the guest mapped it without the
    /// access the device needs) answers nothing, and the queue would otherwise retry forever.
    public let missTimeoutNanoseconds: UInt64
    /// The least time between two reports of one page: retries at every kick do not flood the
    /// front-end while its answer is on its way.
    public let missRepeatNanoseconds: UInt64

    /// The most pages whose report times are remembered (GHT-LIM-03): beyond it the oldest
    /// is forgotten, so a front-end that makes the device miss page after page costs a bounded
    /// table, not one entry per page it ever named.
    public let reportCapacity: Int

    public init(capacity: Int = 1 << 16, missCapacity: Int = 64, reportCapacity: Int = 1024, missTimeoutMilliseconds: Int = 5000,
                missRepeatMilliseconds: Int = 100) {
        self.capacity = capacity
        self.missCapacity = missCapacity
        self.reportCapacity = max(reportCapacity, missCapacity)
        missTimeoutNanoseconds = UInt64(missTimeoutMilliseconds) * 1_000_000
        missRepeatNanoseconds = UInt64(missRepeatMilliseconds) * 1_000_000
    }

    /// The current generation (changes with every update or invalidation).
    public var generation: UInt64 { generationCounter.load(ordering: .acquiring) }

    /// Maps `[iova, iova + size)` to `host` (exactly `size` bytes) with `permissions`.
    /// `userAddress` is the front-end's address of the same bytes (the IOTLB message's
    /// `uaddr`): a range that has one survives a memory-table change by being bound again
    /// (``rebind(_:)``); one without is dropped then.
    public func update(iova: UInt64, size: UInt64, host: HostRange, userAddress: UInt64? = nil,
                       permissions: IOVAPermissions) throws(IOVAError) {
        guard size > 0, iova <= UInt64.max - (size - 1) else { throw .invalidRange(iova: iova, size: size) }
        guard UInt64(host.count) == size else { throw .sizeMismatch(iova: iova, size: size, host: host.count) }
        guard !permissions.isEmpty else { throw .noPermission(iova: iova) }
        let end = iova &+ size   // 0 means 2^64
        try state.withLock { (s) throws(IOVAError) in
            Self.remove(&s.ranges, iova, end)
            guard s.ranges.count < capacity else { throw .full }
            let i = s.ranges.firstIndex { $0.start > iova } ?? s.ranges.count
            s.ranges.insert(Range(start: iova, end: end, host: host.startAddress, permissions: permissions, userAddress: userAddress), at: i)
            s.misses.removeAll { $0.page >= iova >> 12 && ($0.page << 12) &- iova < size }
            s.reports = s.reports.filter { !($0.key >= iova >> 12 && ($0.key << 12) &- iova < size) }
        }
        generationCounter.add(1, ordering: .releasing)
    }

    /// Removes every mapping of `[iova, iova + size)`. A size of 0 stands for 2^64 (QEMU
    /// computes `addr_mask + 1` for a notifier spanning the whole space): everything from `iova`
    /// on goes (GHT-IOVA-08).
    public func invalidate(iova: UInt64, size: UInt64) {
        let end = size != 0 && iova <= UInt64.max - (size - 1) ? iova &+ size : 0
        state.withLock { Self.remove(&$0.ranges, iova, end, capacity: capacity) }
        generationCounter.add(1, ordering: .releasing)
    }

    /// Binds every range again after the memory behind the front-end's user addresses changed
    /// (SET_MEM_TABLE, REM_MEM_REG; GHT-LIFE-01): `resolve` gives the new host bytes of a
    /// range's user address and size, or nil when no region holds them any more, and the range
    /// is dropped. No host address from before the change survives it.
    public func rebind(_ resolve: (_ userAddress: UInt64, _ size: UInt64) -> HostRange?) {
        state.withLock { s in
            s.ranges = s.ranges.compactMap { r in
                guard let user = r.userAddress, let host = resolve(user, r.end &- r.start) else { return nil }
                var bound = r
                bound.host = host.startAddress
                return bound
            }
        }
        generationCounter.add(1, ordering: .releasing)
    }

    /// Removes everything (device reset, ACCESS_PLATFORM renegotiated).
    public func invalidateAll() {
        state.withLock { s in
            s.ranges.removeAll()
            s.reports.removeAll()
        }
        generationCounter.add(1, ordering: .releasing)
    }

    /// Cuts `[start, end)` out of the sorted ranges (`end` 0 means 2^64). A cut inside one range
    /// splits it in two; when that would take the space past `capacity`, the part after the cut
    /// goes too (GHT-LIM-02: removing more than asked is safe for a cache, growing past the
    /// bound is not).
    private static func remove(_ ranges: inout [Range], _ start: UInt64, _ end: UInt64, capacity: Int = .max) {
        func before(_ a: UInt64, _ b: UInt64) -> Bool { b == 0 ? true : a < b }   // a < b with 0 as 2^64
        var result: [Range] = []
        result.reserveCapacity(ranges.count + 1)
        for r in ranges {
            let overlaps = before(r.start, end) && before(start, r.end)
            guard overlaps else {
                result.append(r)
                continue
            }
            let keepsHead = r.start < start
            if keepsHead {
                result.append(r.slice(from: r.start, to: start))
            }
            if end != 0 && before(end, r.end) && !(keepsHead && ranges.count >= capacity) {
                result.append(r.slice(from: end, to: r.end))
            }
        }
        ranges = result
    }

    /// The number of ranges mapped.
    public var rangeCount: Int { state.withLock { $0.ranges.count } }

    /// Looks up `iova` for `access`: the host address and the bytes left in its range.
    func lookup(_ iova: UInt64, access: MemoryAccess) -> (host: UInt, available: UInt64)? {
        state.withLock { s -> (host: UInt, available: UInt64)? in
            var lo = 0, hi = s.ranges.count
            while lo < hi {
                let mid = (lo + hi) / 2
                if s.ranges[mid].start <= iova { lo = mid + 1 } else { hi = mid }
            }
            guard lo > 0 else { return nil }
            let r = s.ranges[lo - 1]
            guard r.end == 0 || iova < r.end else { return nil }
            guard r.permissions.allows(access) else { return nil }
            return (r.host &+ UInt(iova &- r.start), r.end &- iova)
        }
    }

    /// Whether `iova` is mapped at all (to tell a permission fault from a miss).
    func isMapped(_ iova: UInt64) -> Bool {
        state.withLock { s in s.ranges.contains { $0.start <= iova && ($0.end == 0 || iova < $0.end) } }
    }

    /// Records a miss (coalesced per page; beyond ``missCapacity`` distinct pages, dropped and
    /// counted). Returns false once the page was first reported more than
    /// ``missTimeoutNanoseconds`` ago with no mapping since: the miss is then a fault, not a
    /// wait (GHT-IOVA-07).
    func recordMiss(_ iova: UInt64, access: MemoryAccess) -> Bool {
        let now = Self.now()
        return state.withLock { s in
            let page = iova >> 12
            if let r = s.reports[page], now &- r.first > missTimeoutNanoseconds { return false }
            guard !s.misses.contains(where: { $0.page == page && $0.access == access }) else { return true }
            if s.misses.count < missCapacity { s.misses.append((page, access)) } else { s.droppedMisses += 1 }
            return true
        }
    }

    /// The pending misses to report now (page-aligned IOVA and access), oldest first; the list
    /// is emptied. A page reported less than ``missRepeatNanoseconds`` ago is not reported again.
    public func takeMisses() -> [(iova: UInt64, access: MemoryAccess)] {
        let now = Self.now()
        return state.withLock { s in
            defer { s.misses.removeAll() }
            var due: [(iova: UInt64, access: MemoryAccess)] = []
            for m in s.misses {
                if let r = s.reports[m.page] {
                    guard now &- r.last >= missRepeatNanoseconds else { continue }
                    s.reports[m.page] = (r.first, now)
                } else {
                    if s.reports.count >= reportCapacity, let oldest = s.reports.min(by: { $0.value.last < $1.value.last }) {
                        s.reports[oldest.key] = nil
                    }
                    s.reports[m.page] = (now, now)
                }
                due.append((m.page << 12, m.access))
            }
            return due
        }
    }

    /// Nanoseconds since the first call, from the standard library's monotonic clock: this
    /// module sits below the OS layer and makes no system call of its own (ARCHITECTURE.md).
    static func now() -> UInt64 {
        let elapsed = clockOrigin.duration(to: .now).components
        return UInt64(elapsed.seconds) &* 1_000_000_000 &+ UInt64(elapsed.attoseconds / 1_000_000_000)
    }

    /// Pages whose report times are remembered (at most ``reportCapacity``).
    public var reportedPageCount: Int { state.withLock { $0.reports.count } }

    /// Misses dropped because the pending list was full.
    public var droppedMisses: Int { state.withLock { $0.droppedMisses } }
}

/// The origin of ``IOVASpace/now()``: report times are only ever compared with each other.
private let clockOrigin = ContinuousClock.now
