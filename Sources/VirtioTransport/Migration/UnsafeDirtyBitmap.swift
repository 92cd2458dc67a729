import Synchronization

/// The dirty log's bitmap in memory the front-end shares (vhost-user.rst "Migration"): bit
/// `page % 8` of byte `page / 8` stands for the guest-physical page `page` of
/// ``pageSize`` bytes. The one place that forms pointers into the log.
///
/// The front-end reads and clears the bits while the back-end sets them, so a bit is set with
/// an atomic OR of its byte, ordered after the writes it reports (release, GHT-LOG-13): a front-end that
/// sees the bit and then copies the page copies what the back-end wrote.
struct UnsafeDirtyBitmap: @unchecked Sendable {
    /// `VHOST_LOG_PAGE`.
    static let pageSize: UInt64 = 4096
    private static let pageShift: UInt64 = 12

    private let base: UnsafeMutableRawPointer
    /// The bytes of the bitmap.
    let byteCount: Int

    /// A view of `byteCount` bytes at `base`; the caller keeps the mapping alive (``DirtyLog``).
    init(base: UnsafeMutableRawPointer, byteCount: Int) {
        self.base = base
        self.byteCount = byteCount
    }

    /// The guest-physical bytes the bitmap covers: from 0 to this address.
    var coveredEnd: UInt64 { UInt64(byteCount) &* 8 &* Self.pageSize }

    /// Marks every page `[address, address + length)` touches. Returns `false`, marking nothing,
    /// when any of them lies beyond the bitmap (or the range passes 2^64).
    @inline(__always)
    func mark(_ address: UInt64, length: Int) -> Bool {
        guard length > 0 else { return true }
        let (last, overflow) = address.addingReportingOverflow(UInt64(length) &- 1)
        guard !overflow, last < coveredEnd else { return false }
        var page = address >> Self.pageShift
        let lastPage = last >> Self.pageShift
        while page <= lastPage {
            let bit = page & 7
            let count = min(8 &- bit, lastPage &- page &+ 1)
            let mask = UInt8(truncatingIfNeeded: ((1 as UInt64) << count &- 1) << bit)
            (base + Int(page >> 3)).assumingMemoryBound(to: Atomic<UInt8>.self).pointee.bitwiseOr(mask, ordering: .releasing)
            page &+= count
        }
        return true
    }

    /// Whether the bit of guest page `page` is set (tests; the front-end's view).
    func isMarked(page: UInt64) -> Bool {
        guard page / 8 < UInt64(byteCount) else { return false }
        let byte = (base + Int(page >> 3)).assumingMemoryBound(to: Atomic<UInt8>.self).pointee.load(ordering: .acquiring)
        return byte & (1 << UInt8(page & 7)) != 0
    }
}
