import VirtioCore

/// Fuzz target: the device side of a split ring over a fuzzed ring memory image.
///
/// Input: queue size (log2), features, the starting ring positions, a memory image copied over
/// a 64 KiB guest region (the ring at guest address 0, then indirect tables and payload), and
/// a sequence of device operations — pop, read and write through the chain reader and writer,
/// resolve, add used, publish, notification decisions, reset, give back, and hostile changes
/// to the ring between operations. Chains are taken exactly as fuzzed.
///
/// Checked inside: every popped chain is well formed (head in range, readable segments first,
/// lengths summed right, at most queue size segments, never popped twice while in flight); the
/// reader yields exactly the bytes of the readable segments and the writer writes only the
/// writable ones, both as a reference walk of the same segments says; a used element lands
/// where it should; a broken queue stays broken, with DEVICE_NEEDS_RESET set, and rethrows
/// its first error.
public enum SplitDeviceTarget {
    static let regionSize = 64 * 1024

    public static func run(_ data: UnsafeRawBufferPointer) {
        var input = FuzzInput(data)
        let queueSize = 1 << (Int(input.byte()) % 9)
        let featureBits = input.byte()
        var features: VirtioFeatures = [.version1]
        if featureBits & 1 != 0 { features.insert(.indirectDescriptors) }
        if featureBits & 2 != 0 { features.insert(.eventIndex) }
        let startAvail = input.integer(UInt16.self), startUsed = input.integer(UInt16.self)
        let image = input.take(Int(input.integer(UInt16.self)))
        let region = GuestMemoryRegion(size: regionSize)
        region.write(image.prefix(regionSize), at: 0)
        let layout = SplitRingLayout(queueSize: queueSize)!
        let status = DeviceStatusCell([.acknowledge, .driver, .featuresOK, .driverOK])
        var queue: SplitDeviceQueue<IdentityTranslator>
        do {
            queue = try SplitDeviceQueue(queueSize: queueSize, addresses: SplitRingAddresses(contiguousAt: 0, layout: layout),
                                         memory: region.identityTranslator, features: features, statusCell: status,
                                         nextAvailIndex: startAvail, usedIndex: startUsed)
        } catch {
            fuzzCheck(false, "a valid layout at address 0 was refused: \(error)")
            return
        }
        var model = DeviceModel<SplitDeviceQueue<IdentityTranslator>>(region: region, queueSize: queueSize, ringBytes: 3 * 4096)
        var steps = 0
        while !input.isExhausted && steps < 512 {
            steps += 1
            model.step(&queue, &input, status: status)
        }
    }
}

extension SplitDeviceQueue: FuzzedDeviceQueue where Memory == IdentityTranslator {
    var usedCheckpoint: Int { Int(nextUsedIndex) }

    func checkUsed(at checkpoint: Int, _ chain: DescriptorChain, length: UInt32) {
        let e = ring.usedRing.element(checkpoint & (layout.count - 1))
        fuzzCheck(e.id == UInt32(chain.headIndex) && e.length == length, "used element \(e) for head \(chain.headIndex)")
    }

    func checkPublished() {
        fuzzCheck(ring.usedRing.loadIndex() == nextUsedIndex, "used.idx not published")
    }

    mutating func fuzzReset(_ input: inout FuzzInput) {
        reset(nextAvailIndex: input.integer(UInt16.self), usedIndex: input.integer(UInt16.self))
    }

    /// The hostile driver moves avail.idx.
    func hostileIndexChange(_ input: inout FuzzInput) {
        ring.availRing.storeIndex(input.integer(UInt16.self))
    }

    mutating func fuzzProcess(limit: Int, _ body: (DescriptorChain, IdentityTranslator) throws(VirtqueueError) -> UInt32) throws(VirtqueueError) {
        _ = try processAvailable(limit: limit, body)
    }
}
