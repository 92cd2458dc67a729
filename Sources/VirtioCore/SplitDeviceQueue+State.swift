extension SplitDeviceQueue {
    /// Sets up the device side over the ring `state` names, translated once through `memory`,
    /// resuming at its positions (GHT-QST-03).
    ///
    /// - Throws: ``QueueStateError`` when the state is not a legal split state, its event
    ///   index disagrees with `features`, or its areas cannot be set up.
    public init(state: QueueState, memory: Memory, features: VirtioFeatures, statusCell: DeviceStatusCell? = nil,
                overflowBlocks: Int? = nil) throws(QueueStateError) {
        guard state.format == .split, let layout = SplitRingLayout(queueSize: state.size) else { throw .differentRing }
        let ring: SplitRing
        do {
            ring = try SplitRing(layout: layout, addresses: state.splitAddresses, memory: memory)
        } catch {
            throw .setup(error)
        }
        try self.init(ring: ring, memory: memory, features: features, statusCell: statusCell, state: state,
                      overflowBlocks: overflowBlocks)
    }

    /// Sets up the device side over an already resolved `ring` that `state` describes (its
    /// areas are recorded as the state's), resuming at the state's positions (GHT-QST-03).
    public init(ring: SplitRing, memory: Memory, features: VirtioFeatures, statusCell: DeviceStatusCell? = nil,
                state: QueueState, overflowBlocks: Int? = nil) throws(QueueStateError) {
        try state.validate()
        guard state.format == .split, state.size == ring.layout.count,
              state.eventIndex == features.contains(.eventIndex) else { throw .differentRing }
        self.init(ring: ring, areas: state.splitAddresses, memory: memory, features: features, statusCell: statusCell,
                  nextAvailIndex: state.nextAvail, usedIndex: state.nextUsed, overflowBlocks: overflowBlocks)
    }

    /// Where the queue stands (GHT-QST-01): the next available index to read, the next used
    /// index to write (published or not), the ring's size, areas and event-index flag. Chains in
    /// flight are not in it; take it after ``publishUsed()``.
    public var state: QueueState {
        QueueState(format: .split, size: layout.count, descriptorArea: areas.descriptorTable, driverArea: areas.availRing,
                   deviceArea: areas.usedRing, nextAvail: lastAvail, nextUsed: usedIndex, eventIndex: eventIndexEnabled)
    }

    /// Where the queue will stand once `chains` (popped from it, in flight) are completed and
    /// published: the used index one further per chain. Chains not in flight count for nothing.
    public func state(completing chains: [DescriptorChain]) -> QueueState {
        var s = state
        for chain in chains where chain.epoch == epoch && inFlight[chain.head] == Self.inFlightTag(epoch) {
            s.nextUsed &+= 1
        }
        return s
    }

    /// Resumes from `state` as ``reset(nextAvailIndex:usedIndex:)`` does: nothing in flight, not
    /// broken, the positions the state's (GHT-QST-02, GHT-QST-03).
    ///
    /// - Throws: ``QueueStateError/differentRing`` when the state is another ring's (format,
    ///   size, areas, event index), and nothing changes.
    public mutating func restore(_ state: QueueState) throws(QueueStateError) {
        guard state.isSameRing(as: self.state) else { throw .differentRing }
        try state.validate()
        reset(nextAvailIndex: state.nextAvail, usedIndex: state.nextUsed)
    }
}
