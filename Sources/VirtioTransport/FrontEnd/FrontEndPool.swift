import VirtioCore
import VirtioGrants
import VirtioSystem
import VhostUser

/// The memory a front-end shares with its one back-end (Spec/hostile-peers.md §5): two memfds
/// of its own, never shared with another connection (GHT-HBE-01).
///
/// - The *readable* file holds every page the device only reads (a split ring's descriptor
///   table, the available ring and driver event area, indirect tables, request buffers). It is
///   sealed with `F_SEAL_FUTURE_WRITE` once this process has mapped it, so the back-end can map
///   it only read-only: the kernel, not the protocol, keeps a read-only grant unwritten
///   (GHT-HBE-03).
/// - The *writable* file holds the pages the device writes (the used ring, a packed ring's
///   descriptors, the device event area, reply buffers).
///
/// Frames (grant terms) and guest-physical addresses number the readable file's pages first,
/// then the writable file's: the back-end sees two regions side by side. A page holds guest
/// data only while it is granted and its request is in flight: requests are copied in,
/// replies copied out, and a page is zeroed before it is free or idle again (GHT-HBE-02, 04).
final class FrontEndPool {
    let readable: SharedMemory
    let writable: SharedMemory
    let readablePages: Int
    let writablePages: Int
    private var readableFree: PageAllocator
    private var writableFree: PageAllocator

    init(sealed: Bool = true, readablePages: Int, writablePages: Int) throws(SharedMemoryError) {
        let page = GrantHandle.pageSize
        readable = sealed ? try SharedMemory.createWritableOnlyHere(name: "virtio-grant-readable", size: readablePages * page)
            : try SharedMemory.create(name: "virtio-grant-readable", size: readablePages * page)
        writable = try SharedMemory.create(name: "virtio-grant-writable", size: writablePages * page)
        self.readablePages = readablePages
        self.writablePages = writablePages
        readableFree = PageAllocator(pages: readablePages)
        writableFree = PageAllocator(pages: writablePages)
    }

    /// Frames in both files.
    var pageCount: Int { readablePages + writablePages }
    /// Bytes in both files: the extent of the guest-physical space.
    var size: Int { pageCount * GrantHandle.pageSize }

    /// `count` consecutive frames in the file for `deviceReadOnly` pages; the first frame.
    func allocate(_ count: Int, deviceReadOnly: Bool) -> Int? {
        if deviceReadOnly { return readableFree.allocate(count) }
        return writableFree.allocate(count).map { readablePages + $0 }
    }

    /// Zeroes frames `[first, first + count)` and frees them (GHT-HBE-04).
    func free(_ first: Int, _ count: Int) {
        host(first, count).fill(with: 0)
        if first < readablePages { readableFree.free(first, count) } else { writableFree.free(first - readablePages, count) }
    }

    /// This process's view of frames `[first, first + count)`, which lie in one file.
    func host(_ first: Int, _ count: Int) -> HostRange {
        let page = GrantHandle.pageSize
        if first < readablePages { return readable.range.slice(offset: first * page, length: count * page) }
        return writable.range.slice(offset: (first - readablePages) * page, length: count * page)
    }

    /// Zeroes both files: after the grants ended, nothing of the guest's stays where the
    /// back-end, which may keep its mappings, can read it (GHT-HBE-04).
    func scrub() {
        readable.range.fill(with: 0)
        writable.range.fill(with: 0)
    }

    /// The two regions for SET_MEM_TABLE, readable first, with their files.
    var memoryTable: (VhostUserMemoryTable, [Int32]) {
        let r = VhostUserMemoryRegion(guestAddress: 0, size: UInt64(readable.size),
                                      userAddress: UInt64(readable.range.startAddress), mmapOffset: 0)
        let w = VhostUserMemoryRegion(guestAddress: UInt64(readable.size), size: UInt64(writable.size),
                                      userAddress: UInt64(writable.range.startAddress), mmapOffset: 0)
        return (VhostUserMemoryTable(regions: [r, w]), [readable.fd.rawValue, writable.fd.rawValue])
    }
}

extension FrontEnd {
    /// Allocates `count` frames (in the readable file when the device only reads them); in
    /// grant mode grants them to the back-end (consecutive references, H5) with `readOnly` access.
    func allocate(pages count: Int, readOnly: Bool) throws(FrontEndError) -> PoolRun {
        guard let first = pool.allocate(count, deviceReadOnly: readOnly) else { throw .exhausted("no \(count) free pages in the pool") }
        var reference: GrantReference?
        if let grants {
            do {
                reference = try grants.grant(frames: (first..<(first + count)).map { UInt32($0) }, to: configuration.backEndDomain,
                                             readOnly: readOnly)
            } catch {
                pool.free(first, count)
                throw .grant(error)
            }
            grantedRuns.append((reference!, count))
            grantsMade += count
        }
        return PoolRun(firstPage: first, pageCount: count, firstReference: reference, host: pool.host(first, count))
    }
}

/// A run of frames of the pool: where they are for the front-end and how the device names them.
struct PoolRun {
    let firstPage: Int
    let pageCount: Int
    /// The grant reference of the first page (grant mode).
    let firstReference: GrantReference?
    let host: HostRange

    /// The device-visible address of byte `offset` of the run.
    func deviceAddress(_ offset: Int) -> UInt64 {
        precondition(offset >= 0 && offset <= pageCount * GrantHandle.pageSize)
        if let firstReference {
            return GrantHandle(reference: firstReference.advanced(by: offset / GrantHandle.pageSize), offset: offset % GrantHandle.pageSize).rawValue
        }
        return UInt64(firstPage * GrantHandle.pageSize + offset)
    }

    /// The front-end's (user) address of byte `offset`, for vhost-user ring addresses in
    /// guest-physical mode.
    func userAddress(_ offset: Int) -> UInt64 { UInt64(host.startAddress) + UInt64(offset) }
}
