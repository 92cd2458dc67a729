import VirtioCore
import VirtioGrants
import VirtioSystem
import VhostUser

/// The memory a grant table's frames live in, as the mapper needs it: one contiguous range,
/// what keeps it mapped, and which frames the back-end may only read.
struct GrantFrames {
    let range: HostRange
    let owners: [AnyObject]
    /// Frames in regions mapped read-only (GHT-HBE-03): the mapper refuses write mappings of them.
    let readOnly: [Range<Int>]
    /// The region the frames start in.
    let first: SharedMemory
}

extension BackEndSession {
    /// The most regions the frames of one grant table may span.
    static let maxGrantFrameRegions = 8

    /// The frames of `info`: `frameCount` pages from `framesGuestAddress`, in one registered
    /// region or in regions that follow each other in guest-physical addresses (a front-end
    /// that keeps its device-readable pages in a file sealed read-only and the rest in
    /// another, GHT-HBE-03). Several regions are mapped again side by side
    /// (``AdjacentMapping``) so the frames read as one range. `nil` when the frames are not
    /// all in registered memory.
    func grantFrames(_ info: VhostUserGrantTable) -> GrantFrames? {
        let page = UInt64(GrantHandle.pageSize)
        let (frameBytes, overflow) = info.frameCount.multipliedReportingOverflow(by: page)
        guard !overflow, frameBytes <= UInt64(Int.max), frameBytes > 0,
              let first = regions.first(where: { $0.descriptor.guestAddress == info.framesGuestAddress }) else { return nil }
        let frameCount = Int(info.frameCount)
        if UInt64(first.range.count) >= frameBytes {
            return GrantFrames(range: first.range.slice(offset: 0, length: Int(frameBytes)), owners: [first.memory],
                               readOnly: first.writable ? [] : [0..<frameCount], first: first.memory)
        }
        // Regions side by side in guest-physical addresses, each a whole number of pages
        // mapped from a page-aligned offset (so that the next starts right after it).
        var chain: [MappedMemoryRegion] = []
        var covered: UInt64 = 0
        while covered < frameBytes {
            let address = info.framesGuestAddress &+ covered
            guard chain.count < Self.maxGrantFrameRegions,
                  let next = regions.first(where: { $0.descriptor.guestAddress == address }),
                  next.descriptor.size % page == 0, next.descriptor.mmapOffset % page == 0 else { return nil }
            chain.append(next)
            let (sum, overflow) = covered.addingReportingOverflow(next.descriptor.size)
            guard !overflow else { return nil }
            covered = sum
        }
        let adjacent: AdjacentMapping
        do {
            adjacent = try AdjacentMapping(chain.map { AdjacentMapping.Window(memory: $0.memory, writable: $0.writable) })
        } catch {
            log(.warning, .control, "grant frames cannot be mapped side by side: \(error)")
            return nil
        }
        var readOnly: [Range<Int>] = []
        var at = 0
        for r in chain {
            let pages = Int(r.descriptor.size / page)
            if !r.writable { readOnly.append(at..<(at + pages)) }
            at += pages
        }
        return GrantFrames(range: adjacent.range.slice(offset: 0, length: Int(frameBytes)), owners: [adjacent] + chain.map(\.memory),
                           readOnly: readOnly, first: first.memory)
    }
}
