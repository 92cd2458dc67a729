/// A violation of the ring protocol found by the device side of a queue.
///
/// Each case is a malformed ring or chain (VIRTIO 1.2 leaves the device's reaction open; our
/// transport breaks the queue and sets DEVICE_NEEDS_RESET, Spec/transport.md §4). The queue
/// keeps the first error it met and throws it again on every later call.
public enum VirtqueueError: Error, Hashable, Sendable {
    /// The available index moved more than the queue size past the last one seen, or backwards
    /// (AVL-DRV-01, AVL-DEF-02).
    case availIndexTooFarAhead(availIndex: UInt16, lastSeen: UInt16)
    /// A chain head in the available ring is not a descriptor index.
    case headOutOfRange(UInt16)
    /// A chain head was made available again while its chain is still in flight (CLN-DRV-01).
    case headInFlight(UInt16)
    /// A `next` link points outside the descriptor or indirect table.
    case nextOutOfRange(next: UInt16, tableSize: Int)
    /// The chain has more segments than the queue size, indirect entries included; every loop
    /// ends here (IND-DRV-03, FRM-DEV-02).
    case chainTooLong(limit: Int)
    /// An INDIRECT descriptor although VIRTIO_F_INDIRECT_DESC was not negotiated (IND-DRV-01).
    case indirectNotNegotiated
    /// INDIRECT and NEXT set in the same descriptor (IND-DRV-04).
    case indirectWithNext
    /// An INDIRECT descriptor inside an indirect table (IND-DRV-02).
    case nestedIndirect
    /// An indirect table whose length is zero or not a multiple of 16 (IND-DEF-01).
    case invalidIndirectLength(UInt32)
    /// An indirect table with more entries than the queue size (IND-DRV-03).
    case indirectTableTooLarge(entries: Int, limit: Int)
    /// A device-readable segment after a device-writable one (FRM-DRV-01).
    case readableAfterWritable
    /// The chain's segments add up to more than 2^32 bytes (SPL-DRV-02).
    case totalLengthOverflow
    /// The indirect table could not be translated as one contiguous readable range.
    case indirectTableFault(TranslationFault)
    /// A segment of a chain could not be reached while the device processed it.
    case memoryFault(TranslationFault)
    /// Packed ring: a buffer id at or above the queue size (PKD-DEF-06).
    case bufferIdOutOfRange(UInt16)
    /// Packed ring: a later descriptor of a list is not available in its lap, although the
    /// list's first one is (the driver exposes the first last: PKD-DEF-06, PKD-DRV-07).
    case listDescriptorNotAvailable(slot: UInt16)
    /// Packed ring: an INDIRECT descriptor inside a NEXT-linked list (PKD-IND-01).
    case indirectInList
    /// The device gave the queue up mid-batch and completed none of it (the scheduler cut the
    /// guest off, Spec/scheduler.md GHT-SCH-08).
    case abandonedByDevice
    /// The in-flight area the front-end handed over (SET_INFLIGHT_FD) cannot be trusted to say
    /// which requests were in flight (Spec/restart.md §1, GHT-INF-07).
    case inflightRegion(InflightRegionDefect)
    /// Packed ring, in-flight tracking: the driver made more slots available than the ring holds
    /// while chains were in flight (it may reuse only slots the device returned, PKD-DEF-06), so
    /// the in-flight area has no entry left to record the list in (Spec/restart.md §1, GHT-INF-10).
    case slotsInFlightBeyondRing(limit: Int)
}

/// A violation of the ring protocol found by the driver side of a queue in what the device
/// wrote, or a request the driver side cannot place.
public enum DriverQueueError: Error, Hashable, Sendable {
    /// Not enough free descriptors for the chain (or no free indirect table when one was asked for).
    case queueFull
    /// A chain needs at least one segment.
    case emptyChain
    /// The chain has more segments than the queue size (IND-DRV-03) or than an indirect table holds.
    case chainTooLong(segments: Int, limit: Int)
    /// The chain's segments add up to more than 2^32 bytes (SPL-DRV-02).
    case totalLengthOverflow
    /// An indirect chain was asked for but VIRTIO_F_INDIRECT_DESC is not negotiated or no
    /// indirect table pool was given (IND-DRV-01).
    case indirectUnavailable
    /// The used index moved past the number of chains outstanding (USD-DEF-01, AVL-DEF-02).
    case usedIndexTooFarAhead(usedIndex: UInt16, lastSeen: UInt16, outstanding: Int)
    /// A used element names a descriptor index outside the queue (USD-DEF-02).
    case usedIdOutOfRange(UInt32)
    /// A used element names a descriptor that is not the head of an outstanding chain (USD-DEF-02).
    case usedIdNotOutstanding(UInt32)
    /// A used element claims more bytes written than the chain's device-writable capacity.
    case usedLengthExceedsBuffer(id: UInt32, length: UInt32, capacity: UInt64)
}

/// Why a chain reader or writer could not complete an access.
public enum ChainAccessError: Error, Hashable, Sendable {
    /// The chain has fewer bytes left than the access needs.
    case endOfChain(needed: Int, available: Int)
    /// A segment could not be reached (the queue should be broken with
    /// ``VirtqueueError/memoryFault(_:)``).
    case fault(TranslationFault)
}
