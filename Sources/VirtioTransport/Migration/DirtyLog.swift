import VirtioCore
import VirtioSystem
import VhostUser

/// A dirty log the front-end gave with SET_LOG_BASE (LOG_SHMFD), mapped, with the memory table
/// it was checked against: marks guest-physical pages, and host bytes the back-end wrote by
/// finding the region they lie in (vhost-user.rst "Migration"; GHT-LOG-05, GHT-LOG-10).
///
/// The mapping lives as long as this object: a worker that took a reference for its batch
/// marks into memory that stays mapped, whatever SET_LOG_BASE comes meanwhile. The file is the
/// front-end's: a truncation poisons the mapping (GHT-LIFE-03), which the session's truncation
/// check sees like any shared region's.
final class DirtyLog: @unchecked Sendable {
    /// The mapping; `TruncationGuarded`, registered with the session's peer memory.
    let memory: SharedMemory
    let bitmap: UnsafeDirtyBitmap
    /// The memory table's regions as host ranges, sorted by host address, with the
    /// guest-physical address of each.
    private let hostStarts: [UInt]
    private let hostSizes: [UInt]
    private let guestStarts: [UInt64]

    /// Why a log is refused (GHT-LOG-03).
    enum Refusal: Error, Equatable, CustomStringConvertible {
        /// The descriptor cannot be mapped as asked: not that long (fstat), not a shared file.
        case unmappable(String)
        /// The log ends before the guest memory the table declares: `needed` bytes for its last
        /// page, `given` in the log.
        case tooSmall(needed: UInt64, given: UInt64)

        var description: String {
            switch self {
            case .unmappable(let why): return "the log cannot be mapped: \(why)"
            case .tooSmall(let needed, let given): return "a log of \(given) bytes does not cover the guest memory (\(needed) needed)"
            }
        }
    }

    /// Maps the log `area` of `fd` (the page below an unaligned offset included) and checks it
    /// covers `regions`. On a refusal `fd` is closed.
    static func map(_ area: VhostUserLogArea, fd: FileDescriptor,
                    regions: [(guest: UInt64, size: UInt64, host: UInt)]) throws(Refusal) -> DirtyLog {
        let page = UInt64(SharedMemory.pageSize)
        let aligned = area.offset & ~(page - 1)
        let delta = Int(area.offset - aligned)   // validated: offset + size is a file offset
        let memory: SharedMemory
        do {
            memory = try SharedMemory.map(fd: fd, size: Int(area.size) + delta, offset: Int(aligned))
        } catch {
            fd.close()
            throw .unmappable("\(error)")
        }
        let range = memory.range.slice(offset: delta, length: Int(area.size))
        let log = DirtyLog(memory: memory, bitmap: UnsafeDirtyBitmap(base: range.base, byteCount: range.count), regions: regions)
        try log.checkCovers(regions)
        return log
    }

    private init(memory: SharedMemory, bitmap: UnsafeDirtyBitmap, regions: [(guest: UInt64, size: UInt64, host: UInt)]) {
        self.memory = memory
        self.bitmap = bitmap
        let sorted = regions.sorted { $0.host < $1.host }
        hostStarts = sorted.map(\.host)
        hostSizes = sorted.map { UInt($0.size) }
        guestStarts = sorted.map(\.guest)
    }

    /// The same log over a new memory table (SET_MEM_TABLE, ADD/REM_MEM_REG), checked again.
    func over(_ regions: [(guest: UInt64, size: UInt64, host: UInt)]) throws(Refusal) -> DirtyLog {
        let log = DirtyLog(memory: memory, bitmap: bitmap, regions: regions)
        try log.checkCovers(regions)
        return log
    }

    /// GHT-LOG-03: every page of every region has its bit in the log.
    private func checkCovers(_ regions: [(guest: UInt64, size: UInt64, host: UInt)]) throws(Refusal) {
        let end = regions.map { $0.guest &+ $0.size }.max() ?? 0
        let needed = VhostUserLogArea.bytesCovering(guestEnd: end)
        guard needed <= UInt64(bitmap.byteCount) else { throw .tooSmall(needed: needed, given: UInt64(bitmap.byteCount)) }
    }

    /// Marks the guest-physical pages of `[address, address + length)`; `false` when the log
    /// does not reach them.
    @inline(__always)
    func mark(guest address: UInt64, length: Int) -> Bool { bitmap.mark(address, length: length) }

    /// Marks the pages of host bytes the back-end wrote, in guest-physical terms: the region of
    /// the memory table that holds them gives their guest address, whatever translated them
    /// (guest-physical, IOVA). `false` when they lie in no region (memory the table does not
    /// share, such as grant frames of our own transport) or beyond the log.
    @inline(__always)
    func mark(host range: HostRange) -> Bool {
        let start = range.startAddress
        // Regions are few (QEMU: a handful); the last one starting at or below wins.
        var i = hostStarts.count &- 1
        while i >= 0 && hostStarts[i] > start { i &-= 1 }
        guard i >= 0 else { return false }
        let offset = start &- hostStarts[i]
        guard offset < hostSizes[i], UInt(range.count) <= hostSizes[i] &- offset else { return false }
        return bitmap.mark(guestStarts[i] &+ UInt64(offset), length: range.count)
    }

    /// The guest-physical address of a host address inside a region, if any.
    func guestAddress(ofHost address: UInt) -> UInt64? {
        guard let i = hostStarts.lastIndex(where: { $0 <= address }), address &- hostStarts[i] < hostSizes[i] else { return nil }
        return guestStarts[i] &+ UInt64(address &- hostStarts[i])
    }
}
