import VirtioCore

/// Fuzz target: the device side of a packed ring over a fuzzed ring memory image.
///
/// Input: queue size (1 to 300, not only powers of 2), features (INDIRECT_DESC, EVENT_IDX,
/// IN_ORDER), the starting positions with their wrap counters, a memory image copied over a
/// 64 KiB guest region (the descriptor ring and both event areas at guest address 0, then
/// indirect tables and payload), and the same operations as ``SplitDeviceTarget``, with the
/// hostile driver flipping AVAIL/USED bits and ids between operations. Lists are taken exactly
/// as fuzzed: chains of NEXT across the wrap, ids in flight or out of range, indirect tables.
///
/// Checked inside: the same invariants as the split target (well-formed chains whose head is
/// a buffer id below N, reader and writer against a reference walk, a broken queue that stays
/// broken with DEVICE_NEEDS_RESET), and a used descriptor that carries the id, length and the
/// device's wrap counter where it should.
public enum PackedDeviceTarget {
    static let regionSize = 64 * 1024

    public static func run(_ data: UnsafeRawBufferPointer) {
        var input = FuzzInput(data)
        let queueSize = 1 + Int(input.integer(UInt16.self)) % 300
        let featureBits = input.byte()
        var features: VirtioFeatures = [.version1, .ringPacked]
        if featureBits & 1 != 0 { features.insert(.indirectDescriptors) }
        if featureBits & 2 != 0 { features.insert(.eventIndex) }
        if featureBits & 4 != 0 { features.insert(.inOrder) }
        let startAvail = PackedRingPosition(rawValue: input.integer(UInt16.self))
        let startUsed = PackedRingPosition(rawValue: input.integer(UInt16.self))
        let image = input.take(Int(input.integer(UInt16.self)))
        let region = GuestMemoryRegion(size: regionSize)
        region.write(image.prefix(regionSize), at: 0)
        let layout = PackedRingLayout(queueSize: queueSize)!
        let status = DeviceStatusCell([.acknowledge, .driver, .featuresOK, .driverOK])
        var queue: PackedDeviceQueue<IdentityTranslator>
        do {
            queue = try PackedDeviceQueue(queueSize: queueSize, addresses: PackedRingAddresses(contiguousAt: 0, layout: layout),
                                          memory: region.identityTranslator, features: features, statusCell: status,
                                          availPosition: startAvail, usedPosition: startUsed)
        } catch {
            fuzzCheck(false, "a valid layout at address 0 was refused: \(error)")
            return
        }
        var model = DeviceModel<PackedDeviceQueue<IdentityTranslator>>(region: region, queueSize: queueSize,
                                                                       ringBytes: layout.contiguousOffsets.totalSize)
        var steps = 0
        while !input.isExhausted && steps < 512 {
            steps += 1
            model.step(&queue, &input, status: status)
        }
    }
}

extension PackedDeviceQueue: FuzzedDeviceQueue where Memory == IdentityTranslator {
    var usedCheckpoint: Int { Int(nextUsedPosition.rawValue) }

    func checkUsed(at checkpoint: Int, _ chain: DescriptorChain, length: UInt32) {
        let position = PackedRingPosition(rawValue: UInt16(truncatingIfNeeded: checkpoint))
        // IN_ORDER batches are written when they close (checked by checkPublished).
        guard !features.contains(.inOrder) else {
            fuzzCheck(hasUnwrittenUsed, "an IN_ORDER completion neither batched nor written")
            return
        }
        // GHT-PKD-11: a batch's first used descriptor is written by publishUsed.
        guard heldUsedPosition != position else {
            fuzzCheck(hasUnwrittenUsed, "a held completion not counted as unwritten")
            return
        }
        let d = ring.descriptorRing.load(position.slot)
        fuzzCheck(d.id == chain.headIndex && d.length == length, "used descriptor \(d) for buffer \(chain.headIndex)")
        fuzzCheck(d.flags.isUsed(wrapCounter: position.wrapCounter), "used descriptor flags \(d.flags) in lap \(position.wrapCounter)")
        fuzzCheck(d.flags.contains(.write) == (chain.writableLength > 0), "WRITE in a used descriptor")
    }

    func checkPublished() {
        fuzzCheck(!hasUnwrittenUsed, "a batch left unwritten by publishUsed")
    }

    mutating func fuzzReset(_ input: inout FuzzInput) {
        reset(availPosition: PackedRingPosition(rawValue: input.integer(UInt16.self)),
              usedPosition: PackedRingPosition(rawValue: input.integer(UInt16.self)))
    }

    /// The hostile driver rewrites a slot's flags (AVAIL/USED for either lap, NEXT, INDIRECT,
    /// WRITE) and id.
    func hostileIndexChange(_ input: inout FuzzInput) {
        let slot = input.index(below: layout.count)
        let d = ring.descriptorRing.load(slot)
        ring.descriptorRing.store(PackedDescriptor(address: d.address, length: d.length, id: input.integer(UInt16.self),
                                                   flags: PackedDescriptorFlags(rawValue: input.integer(UInt16.self))),
                                  at: slot, publishing: true)
    }

    mutating func fuzzProcess(limit: Int, _ body: (DescriptorChain, IdentityTranslator) throws(VirtqueueError) -> UInt32) throws(VirtqueueError) {
        var processed = 0
        while processed < limit, let chain = try popAvailable() {
            let length: UInt32
            do {
                length = try body(chain, memory)
            } catch {
                throw fail(error)
            }
            addUsed(chain, length: min(length, UInt32(clamping: chain.writableLength)))
            processed += 1
        }
        publishUsed()
    }
}
