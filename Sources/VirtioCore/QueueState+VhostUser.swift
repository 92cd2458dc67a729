extension QueueState {
    /// The state in vhost-user's VHOST_USER_GET_VRING_BASE / SET_VRING_BASE `num` encoding
    /// (vhost-user.rst "Ring states", GHT-PKD-08): for a split ring the next available index;
    /// for a packed ring the next available slot and driver wrap counter in bits 0–15 and the
    /// next used slot and device wrap counter in bits 16–31.
    public var vhostUserBase: UInt32 {
        switch format {
        case .split: UInt32(nextAvail)
        case .packed: UInt32(availPosition.rawValue) | UInt32(usedPosition.rawValue) &<< 16
        }
    }

    /// Decodes a vhost-user vring base for a queue of `format` and `size` at the given areas
    /// (GHT-QST-04). A split base carries only the available index: the used index is
    /// `splitUsedIndex` (a back-end reads it from the used ring).
    ///
    /// - Throws: ``QueueStateError`` when a split base has bits above 15 or a packed base names
    ///   a slot beyond the size (the peer's value: checked, never trusted).
    public init(vhostUserBase base: UInt32, format: Format, size: Int, descriptorArea: UInt64 = 0, driverArea: UInt64 = 0,
                deviceArea: UInt64 = 0, eventIndex: Bool = false, splitUsedIndex: UInt16 = 0) throws(QueueStateError) {
        self.init(format: format, size: size, descriptorArea: descriptorArea, driverArea: driverArea,
                  deviceArea: deviceArea, eventIndex: eventIndex)
        switch format {
        case .split:
            guard base <= UInt32(UInt16.max) else { throw .splitBaseBeyond16Bits(base) }
            nextAvail = UInt16(truncatingIfNeeded: base)
            nextUsed = splitUsedIndex
        case .packed:
            availPosition = PackedRingPosition(rawValue: UInt16(truncatingIfNeeded: base))
            usedPosition = PackedRingPosition(rawValue: UInt16(truncatingIfNeeded: base &>> 16))
        }
        try validate()
    }
}
