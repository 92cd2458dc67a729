import VirtioCore

/// Raw writes into a split ring (VIRTIO 1.2 §2.7), shared by the split harnesses whatever
/// addresses their descriptors carry (guest-physical in ``SplitRingHarness``, grant handles in
/// ``GrantedSplitRingHarness``). Nothing here is checked: a malformed ring reaches the queue
/// under test exactly as written (GHT-CNF-08, GHT-CNF-09).
public protocol SplitRingScripting: ~Copyable {
    /// The driver's view of the ring memory.
    var ring: SplitRing { get }
    var layout: SplitRingLayout { get }
}

extension SplitRingScripting where Self: ~Copyable {
    // MARK: the scripted front-end: raw driver-side writes

    /// Stores a descriptor in slot `index` of the descriptor table, unchecked.
    public func writeDescriptor(_ index: Int, address: UInt64, length: UInt32, flags: DescriptorFlags = [], next: UInt16 = 0) {
        ring.descriptorTable.store(Descriptor(address: address, length: length, flags: flags, next: next), at: index)
    }

    /// Places `heads` in the available ring starting at position `from` and publishes `from + heads.count`.
    public func makeAvailable(_ heads: [UInt16], from position: UInt16 = 0) {
        for (i, head) in heads.enumerated() {
            ring.availRing.setEntry(Int(position &+ UInt16(i)) & (layout.count - 1), head)
        }
        ring.availRing.storeIndex(position &+ UInt16(heads.count))
    }

    /// Publishes any available index, without entries (an index jump, a move backwards).
    public func publishAvailable(_ index: UInt16) { ring.availRing.storeIndex(index) }

    // MARK: the scripted back-end: raw device-side writes

    /// Writes a used element at used-ring position `position` (not yet published).
    public func writeUsed(_ position: UInt16, id: UInt32, length: UInt32) {
        ring.usedRing.setElement(Int(position) & (layout.count - 1), UsedElement(id: id, length: length))
    }

    /// Publishes any used index.
    public func publishUsed(_ index: UInt16) { ring.usedRing.storeIndex(index) }

    /// The used elements published so far (from position 0).
    public var usedElements: [UsedElement] {
        let n = Int(ring.usedRing.loadIndex())
        return (0..<n).map { ring.usedRing.element($0 & (layout.count - 1)) }
    }
}
