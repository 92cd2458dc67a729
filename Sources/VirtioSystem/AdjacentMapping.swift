#if canImport(Glibc)
import Glibc
#endif
import CVirtioShim
import VirtioCore

/// Windows of several shared files mapped one after another in one reservation of address
/// space, so that they read as one range: the grant frames of a front-end whose device-readable
/// pages and device-writable pages are two files (Spec/hostile-peers.md GHT-HBE-03), which the
/// grant mapper needs contiguous.
///
/// The reservation is an anonymous `PROT_NONE` mapping; each window replaces its part with
/// `mmap(MAP_SHARED | MAP_FIXED)`, read-write or read-only as asked. The files' descriptors
/// are not kept: the mapping holds the files. ``unmap()`` (or deallocation) unmaps it all.
public final class AdjacentMapping: TruncationGuarded, @unchecked Sendable {
    // @unchecked: `base` and `size` are immutable; unmapping happens once, in deinit.
    private let base: UnsafeMutableRawPointer
    /// The bytes mapped: the sum of the windows' sizes.
    public let size: Int
    /// The truncation guard's slot (GHT-LIFE-03): these are peer files too, mapped a second time.
    private let guardSlot: Int32

    /// One window: `size` bytes at `offset` of `memory`'s file, which ``SharedMemory`` has
    /// already checked against the file.
    public struct Window {
        public let memory: SharedMemory
        public let writable: Bool
        public init(memory: SharedMemory, writable: Bool) {
            self.memory = memory
            self.writable = writable
        }
    }

    /// Maps `windows` in order, each starting where the previous one ends. Every window but
    /// the last must be a whole number of pages (else the next could not start right after).
    public init(_ windows: [Window]) throws(SharedMemoryError) {
        let page = SharedMemory.pageSize
        guard !windows.isEmpty else { throw .invalidSize(0) }
        var total = 0
        for (k, w) in windows.enumerated() {
            guard k == windows.count - 1 || w.memory.size % page == 0 else { throw .invalidSize(w.memory.size) }
            let (t, overflow) = total.addingReportingOverflow(w.memory.size)
            guard !overflow else { throw .rangeOverflow(offset: total, size: w.memory.size) }
            total = t
        }
        let reservation: UnsafeMutableRawPointer
        do {
            reservation = try pointerOrErrno("mmap", failure: MAP_FAILED) {
                mmap(nil, total, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
            }
        } catch {
            throw .system(error)
        }
        var at = 0
        for w in windows {
            let target = reservation + at
            let protection = w.writable ? PROT_READ | PROT_WRITE : PROT_READ
            do {
                _ = try pointerOrErrno("mmap", failure: MAP_FAILED) {
                    mmap(target, w.memory.size, protection, MAP_SHARED | MAP_FIXED, w.memory.fd.rawValue, off_t(w.memory.offset))
                }
            } catch {
                Self.release(reservation, total)
                throw .system(error)
            }
            at += w.memory.size
        }
        base = reservation
        size = total
        guardSlot = CVirtioShim_guard_register(reservation, total)
    }

    deinit {
        if guardSlot >= 0 { CVirtioShim_guard_unregister(guardSlot) }
        Self.release(base, size)
    }

    // munmap fails only for arguments mmap itself returned, that is, never.
    private static func release(_ base: UnsafeMutableRawPointer, _ size: Int) {
        _ = try? nothingOrErrno("munmap") { munmap(base, size) }
    }

    /// Whether a window's file shrank under the mapping and an access met a lost page (GHT-LIFE-03).
    public var isPoisoned: Bool { guardSlot >= 0 && CVirtioShim_guard_is_poisoned(guardSlot) != 0 }

    /// The mapped bytes, the windows in order.
    public var range: HostRange { HostRange(unsafeBase: base, count: size) }
}
