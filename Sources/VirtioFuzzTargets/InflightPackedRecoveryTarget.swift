import VirtioCore

/// The packed half of the `inflight-recovery` fuzz target: a packed queue restarting over an
/// in-flight area a hostile front-end wrote (Spec/restart.md §1, GHT-INF-09…15).
///
/// Input (after the format byte): the vring base's position, the area's bytes (copied over a
/// zeroed area of the ring's size), a ring image (descriptor ring and event areas at guest
/// address 0, indirect tables after it), then pops and completions.
///
/// Checked: recovery never traps and either refuses the area (the queue then breaks with
/// ``VirtqueueError/inflightRegion(_:)`` and DEVICE_NEEDS_RESET, and resubmits nothing) or
/// resubmits distinct ids below the queue size, as many as it says, each once, before any new
/// chain; a second recovery over the area the first left agrees with it (count and positions);
/// a completion commits (old fields equal current ones); and at the end, the area the queue kept
/// recovers to exactly the chains still in flight and the queue's next available position.
enum InflightPackedRecoveryTarget {
    static func run(_ input: inout FuzzInput, queueSize: Int) {
        let base = PackedRingPosition(rawValue: input.integer(UInt16.self))
        let position = base.isValid(count: queueSize) ? base : .start
        let areaBytes = InflightLayout.queueAreaSize(queueSize: queueSize, packed: true)
        let areaMemory = GuestMemoryRegion(size: areaBytes)
        areaMemory.write(input.take(Int(input.integer(UInt16.self)) % (areaBytes + 1)), at: 0)
        let area = areaMemory.hostRange(at: 0, count: areaBytes)!
        let region = GuestMemoryRegion(size: InflightRecoveryTarget.regionSize)
        region.write(input.take(Int(input.integer(UInt16.self)) % (5 * 4096 + 1)), at: 0)
        let layout = PackedRingLayout(queueSize: queueSize)!
        let ring = try! PackedRing(layout: layout, contiguous: region.hostRange(at: 0, count: layout.contiguousOffsets.totalSize)!)
        let status = DeviceStatusCell([.acknowledge, .driver, .featuresOK, .driverOK])
        let view = UnsafeInflightPacked(area)!
        let wasFresh = view.version == 0
        var queue = PackedDeviceQueue(ring: ring, memory: region.identityTranslator,
                                      features: [.version1, .ringPacked, .indirectDescriptors],
                                      statusCell: status, availPosition: position, usedPosition: position)
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
        if let again = recover(view, ring, queueSize) {
            fuzzCheck(again.resubmit.count == pending && again.availPosition == queue.nextAvailPosition
                      && again.usedPosition == queue.nextUsedPosition, "a second recovery disagrees")
        }
        var seen = Set<Int>()
        var popped: [DescriptorChain] = []
        var steps = 0
        while !input.isExhausted && steps < 256 && !queue.isBroken {
            steps += 1
            if input.bool() || popped.isEmpty {
                let before = queue.pendingResubmissions
                guard let chain = try? queue.popAvailable() else { continue }
                fuzzCheck(Int(chain.headIndex) < queueSize, "id \(Int(chain.headIndex)) beyond the queue")
                if before > 0 {
                    fuzzCheck(queue.pendingResubmissions == before - 1, "a new chain before the resubmitted ones")
                    fuzzCheck(seen.insert(Int(chain.headIndex)).inserted, "id \(Int(chain.headIndex)) resubmitted twice")
                }
                popped.append(chain)
            } else {
                let chain = popped.remove(at: input.index(below: popped.count))
                queue.addUsed(chain, length: 0)
                queue.publishUsed()
                fuzzCheck(view.oldUsedIndex == view.usedIndex && view.oldFreeHead == view.freeHead
                          && Int(view.oldUsedIndex) == queue.nextUsedPosition.slot, "a completion left the area uncommitted")
            }
        }
        guard !queue.isBroken else { return }
        // The area describes exactly what is in flight: a restart now would resubmit that.
        let final = recover(view, ring, queueSize)
        fuzzCheck(final != nil, "the area the queue kept cannot be recovered")
        if let final {
            fuzzCheck(final.resubmit.count == queue.inFlightCount + queue.pendingResubmissions
                      && final.availPosition == queue.nextAvailPosition, "the area disagrees with the queue")
        }
    }

    static func recover(_ view: UnsafeInflightPacked, _ ring: PackedRing, _ n: Int) -> InflightPackedRecovery? {
        try? InflightPackedRecovery.recover(view, queueSize: n, availPosition: .start, usedPosition: .start) { position in
            !ring.descriptorRing.load(position.slot).flags.isAvailable(wrapCounter: position.wrapCounter)
        }
    }
}
