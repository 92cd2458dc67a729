import VirtioCore

/// Fuzz target: a split or packed queue restarting over an in-flight area a hostile front-end
/// wrote (Spec/restart.md §1, GHT-INF-07, GHT-INF-08; packed: GHT-INF-12…15, see
/// ``InflightPackedRecoveryTarget``).
///
/// Input: the format (bit 7: packed) and queue size (log2 in bits 0–6, 1…256), the used ring's index, the area's bytes (copied over a
/// zeroed area of the ring's size), a ring image (descriptor table and available ring at guest
/// address 0), the available index, then pops and completions.
///
/// Checked: recovery never traps and either refuses the area (the queue then breaks with
/// ``VirtqueueError/inflightRegion(_:)`` and DEVICE_NEEDS_RESET, and resubmits nothing) or
/// resubmits distinct heads below the queue size, as many as it says, each once, before any new
/// chain; the next available index is the used index plus that count; a completion publishes
/// and clears its flag; a second recovery over the area the first left agrees with it.
public enum InflightRecoveryTarget {
    static let regionSize = 64 * 1024

    public static func run(_ data: UnsafeRawBufferPointer) {
        var input = FuzzInput(data)
        let format = input.byte()
        let queueSize = 1 << (Int(format & 0x7F) % 9)
        if format & 0x80 != 0 { return InflightPackedRecoveryTarget.run(&input, queueSize: queueSize) }
        let used = input.integer(UInt16.self)
        let areaBytes = InflightLayout.queueAreaSize(queueSize: queueSize, packed: false)
        let areaMemory = GuestMemoryRegion(size: areaBytes)
        areaMemory.write(input.take(Int(input.integer(UInt16.self)) % (areaBytes + 1)), at: 0)
        let area = areaMemory.hostRange(at: 0, count: areaBytes)!
        let region = GuestMemoryRegion(size: regionSize)
        region.write(input.take(Int(input.integer(UInt16.self)) % (3 * 4096 + 1)), at: 0)
        let layout = SplitRingLayout(queueSize: queueSize)!
        let ring = try! SplitRing(layout: layout, contiguous: region.hostRange(at: 0, count: layout.contiguousOffsets.totalSize)!)
        ring.usedRing.storeIndex(used)
        ring.availRing.storeIndex(input.integer(UInt16.self))
        let status = DeviceStatusCell([.acknowledge, .driver, .featuresOK, .driverOK])
        let view = UnsafeInflightSplit(area)!
        let wasFresh = view.version == 0
        var queue = SplitDeviceQueue(ring: ring, memory: region.identityTranslator, features: [.version1, .indirectDescriptors],
                                     statusCell: status, nextAvailIndex: used, usedIndex: used)
        do {
            try queue.trackInflight(in: area)
        } catch {
            guard case .inflightRegion = error else { return fuzzCheck(false, "recovery failed with \(error)") }
            fuzzCheck(queue.isBroken && status.status.contains(.deviceNeedsReset), "a refused area left the queue running")
            fuzzCheck(queue.pendingResubmissions == 0, "a refused area resubmits")
            return
        }
        let pending = queue.pendingResubmissions
        fuzzCheck(pending <= queueSize, "\(pending) resubmissions for a queue of \(queueSize)")
        fuzzCheck(!wasFresh || pending == 0, "a fresh area resubmits")
        fuzzCheck(queue.nextAvailIndex == used &+ UInt16(pending), "next available \(queue.nextAvailIndex), used \(used), \(pending) in flight")
        // A second recovery over the area the first left says the same.
        if let again = try? InflightSplitRecovery.recover(view, queueSize: queueSize, usedIndex: used) {
            fuzzCheck(again.resubmit.count == pending, "a second recovery disagrees")
        }
        var seen = Set<Int>()
        var popped: [DescriptorChain] = []
        var steps = 0
        while !input.isExhausted && steps < 256 && !queue.isBroken {
            steps += 1
            if input.bool() || popped.isEmpty {
                let before = queue.pendingResubmissions
                guard let chain = try? queue.popAvailable() else { continue }
                fuzzCheck(Int(chain.headIndex) < queueSize, "head \(Int(chain.headIndex)) beyond the queue")
                if before > 0 {
                    fuzzCheck(queue.pendingResubmissions == before - 1, "a new chain before the resubmitted ones")
                    fuzzCheck(seen.insert(Int(chain.headIndex)).inserted, "head \(Int(chain.headIndex)) resubmitted twice")
                }
                fuzzCheck(view.flag(Int(chain.headIndex)) == 1, "a popped head is not in flight in the area")
                popped.append(chain)
            } else {
                let chain = popped.remove(at: input.index(below: popped.count))
                queue.addUsed(chain, length: 0)
                queue.publishUsed()
                fuzzCheck(view.flag(Int(chain.headIndex)) == 0 && view.usedIndex == queue.nextUsedIndex, "a completion left the area behind")
            }
        }
    }
}
