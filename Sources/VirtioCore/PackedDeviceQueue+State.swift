extension PackedDeviceQueue {
    /// Sets up the device side over the ring `state` names, translated once through `memory`,
    /// resuming at its positions and wrap counters (GHT-QST-03).
    ///
    /// - Throws: ``QueueStateError`` when the state is not a legal packed state, its event
    ///   index disagrees with `features`, or its areas cannot be set up.
    public init(state: QueueState, memory: Memory, features: VirtioFeatures, statusCell: DeviceStatusCell? = nil,
                overflowBlocks: Int? = nil) throws(QueueStateError) {
        guard state.format == .packed, let layout = PackedRingLayout(queueSize: state.size) else { throw .differentRing }
        let ring: PackedRing
        do {
            ring = try PackedRing(layout: layout, addresses: state.packedAddresses, memory: memory)
        } catch {
            throw .setup(error)
        }
        try self.init(ring: ring, memory: memory, features: features, statusCell: statusCell, state: state,
                      overflowBlocks: overflowBlocks)
    }

    /// Sets up the device side over an already resolved `ring` that `state` describes (its
    /// areas are recorded as the state's), resuming at the state's positions (GHT-QST-03).
    public init(ring: PackedRing, memory: Memory, features: VirtioFeatures, statusCell: DeviceStatusCell? = nil,
                state: QueueState, overflowBlocks: Int? = nil) throws(QueueStateError) {
        try state.validate()
        guard state.format == .packed, state.size == ring.layout.count,
              state.eventIndex == features.contains(.eventIndex) else { throw .differentRing }
        self.init(ring: ring, areas: state.packedAddresses, memory: memory, features: features, statusCell: statusCell,
                  availPosition: state.availPosition, usedPosition: state.usedPosition, overflowBlocks: overflowBlocks)
    }

    /// Where the queue stands (GHT-QST-01): the next slot to pop and the next used slot, each
    /// with its wrap counter, the ring's size, areas and event-index flag. Chains in flight are
    /// not in it; take it after ``publishUsed()`` (an IN_ORDER batch is written there).
    public var state: QueueState {
        var s = QueueState(format: .packed, size: count, descriptorArea: areas.descriptorRing,
                           driverArea: areas.driverEventArea, deviceArea: areas.deviceEventArea, eventIndex: eventIndexEnabled)
        s.availPosition = availPosition
        s.usedPosition = usedPosition
        return s
    }

    /// Where the queue will stand once `chains` (popped from it, in flight) are completed and
    /// published: the used position moved past the slots each list took. Chains not in flight
    /// count for nothing.
    public func state(completing chains: [DescriptorChain]) -> QueueState {
        var position = usedPosition
        let tag = UInt64(Self.inFlightTag(epoch))
        for chain in chains where chain.epoch == epoch {
            let entry = inFlight[chain.head]
            if entry & 0xFFFF_FFFF == tag { position = position.advanced(by: Self.slots(entry), count: count) }
        }
        var s = state
        s.usedPosition = position
        return s
    }

    /// Resumes from `state` as ``reset(availPosition:usedPosition:)`` does: nothing in flight,
    /// not broken, the positions and wrap counters the state's (GHT-QST-02, GHT-QST-03).
    ///
    /// - Throws: ``QueueStateError/differentRing`` when the state is another ring's, or
    ///   ``QueueStateError/positionBeyondSize(_:size:)``; nothing changes then.
    public mutating func restore(_ state: QueueState) throws(QueueStateError) {
        guard state.isSameRing(as: self.state) else { throw .differentRing }
        try state.validate()
        reset(availPosition: state.availPosition, usedPosition: state.usedPosition)
    }
}
