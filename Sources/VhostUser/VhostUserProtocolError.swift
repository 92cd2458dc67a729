import VirtioGrants

/// Why a vhost-user message (or a stream of them) was refused.
///
/// Every case is one kind of violation of the wire rules in `Spec/vhost-user.md` (GHT-VU-nn)
/// and carries the values that broke it. Request numbers are carried raw (`UInt32`) so that a
/// message with an unknown number can be reported as it arrived. A back-end that meets any of
/// these closes the connection (GHT-VU-21); nothing in the codec crashes or allocates more than
/// one bounded message for them.
public enum VhostUserProtocolError: Error, Hashable, Sendable {
    // MARK: Header (vhost-user.rst "Header")

    /// Fewer than the 12 header bytes were given.
    case truncatedHeader(byteCount: Int)
    /// The version bits (flags 0–1) are not 1.
    case unsupportedVersion(UInt32)
    /// Flag bits other than version, REPLY and NEED_REPLY are set (the full flags word).
    case reservedFlags(UInt32)
    /// The header announces a payload larger than ``VhostUserHeader/maximumPayloadSize``.
    case payloadTooLarge(size: UInt32, maximum: Int)
    /// The payload handed to a decoder is not as long as its header says.
    case payloadLengthMismatch(declared: UInt32, actual: Int)

    // MARK: Requests

    /// A request (front-end to back-end, or back-end channel) carries the REPLY flag.
    case replyFlagOnRequest(request: UInt32)
    /// The request number is not one this codec knows (front-end requests).
    case unknownRequest(UInt32)
    /// The request number is not one this codec knows (back-end channel requests).
    case unknownBackEndRequest(UInt32)
    /// The payload is not the size the request requires.
    case wrongPayloadSize(request: UInt32, expected: Int, actual: Int)
    /// The number of file descriptors attached is outside what the request allows.
    case wrongFileDescriptorCount(request: UInt32, expected: ClosedRange<Int>, actual: Int)
    /// A field has bits or a value the protocol reserves (vring file bits 9–63, unknown vring
    /// address flags, SET_VRING_ENABLE / SET_VRING_ENDIAN `num` above 1, VRING_KICK `num` not 0,
    /// a status above 0xFF). `value` is the whole field.
    case reservedBitsSet(request: UInt32, value: UInt64)

    // MARK: Memory regions (VhostUserMemory, VhostUserMemRegMsg)

    /// SET_MEM_TABLE announces more regions than ``VhostUserMemoryTable/maximumRegionCount``.
    case tooManyMemoryRegions(count: UInt32, maximum: Int)
    /// A region of a table (`index`, 0 for ADD/REM_MEM_REG) is unusable.
    case invalidMemoryRegion(index: Int, defect: MemoryRegionDefect)
    /// Two regions of one table overlap in guest-physical space.
    case overlappingMemoryRegions(first: Int, second: Int)

    // MARK: Device configuration (VhostUserConfig)

    /// `size` above 256, or `offset + size` beyond the 256-byte configuration space.
    case invalidConfigRange(offset: UInt32, size: UInt32)
    /// `flags` is neither 0 (front-end write) nor 1 (live migration).
    case invalidConfigFlags(UInt32)

    // MARK: IOTLB (struct vhost_iotlb_msg)

    /// The `type` byte is not MISS, UPDATE, INVALIDATE or ACCESS_FAIL.
    case unknownIOTLBType(UInt8)
    /// The type is known but not allowed in this direction (UPDATE and INVALIDATE go to the
    /// back-end; MISS and ACCESS_FAIL come from it).
    case unexpectedIOTLBType(UInt8)
    /// The `perm` byte is unknown, or is "no access" where the type needs an access.
    case invalidIOTLBPermission(UInt8)
    /// An UPDATE of zero bytes, or whose IOVA or user-address range passes 2^64.
    case invalidIOTLBRange(iova: UInt64, size: UInt64)

    // MARK: Grant-table extension (Spec/vhost-user.md §4)

    /// SET_GRANT_TABLE carries an unusable field.
    case invalidGrantTable(GrantTableDefect)
    /// REVOKE_GRANTS names no reference, or a range that passes reference 2^32 − 1.
    case invalidGrantRange(first: UInt32, count: UInt32)

    // MARK: In-flight tracking (Spec/restart.md §1)

    /// GET_INFLIGHT_FD or SET_INFLIGHT_FD (or GET's reply) carries an unusable field (GHT-INF-01).
    case invalidInflight(InflightDefect)

    // MARK: Replies

    /// A reply lacks the REPLY flag.
    case missingReplyFlag(request: UInt32)
    /// A reply answers another request than the one outstanding.
    case replyMismatch(expected: UInt32, actual: UInt32)
    /// A reply field that must echo the request does not (GET_VRING_BASE index, GET_CONFIG
    /// offset and size).
    case replyFieldMismatch(request: UInt32, expected: UInt64, actual: UInt64)
    /// The request is one this transport does not implement; its reply is not decoded.
    case unsupportedReply(request: UInt32)

    // MARK: Framing (VhostUserFramer)

    /// File descriptors arrived with bytes that do not start a message.
    case fileDescriptorsMidMessage(count: Int)
    /// File descriptors arrived with no bytes at all.
    case fileDescriptorsWithoutData(count: Int)
    /// More file descriptors than one message may carry.
    case tooManyFileDescriptors(count: Int, maximum: Int)
    /// The stream ended inside a message (`buffered` bytes of it had arrived).
    case truncatedMessage(buffered: Int)

    /// What is wrong with a memory region description.
    public enum MemoryRegionDefect: Hashable, Sendable {
        /// `memory_size` is 0.
        case empty
        /// `guest_phys_addr + memory_size` passes 2^64.
        case guestAddressOverflow
        /// `userspace_addr + memory_size` passes 2^64.
        case userAddressOverflow
        /// `mmap_offset + memory_size` passes the largest file offset (2^63 − 1).
        case mmapOffsetOverflow
    }

    /// What is wrong with a SET_GRANT_TABLE payload.
    public enum GrantTableDefect: Hashable, Sendable {
        /// `flags` is not 0.
        case flags(UInt32)
        /// Granter and grantee are the same domain.
        case sameDomain(DomainID)
        /// A domain ID Xen reserves (0x7FF0 and above: DOMID_SELF, DOMID_IO, ...).
        case reservedDomain(DomainID)
        /// The table size is 0, not a multiple of 8, or more than 2^32 entries.
        case tableSize(UInt64)
        /// The table offset is not 4 KiB-aligned, or offset + size passes the largest file offset.
        case tableOffset(UInt64)
        /// The frames region's guest address is not 4 KiB-aligned.
        case framesAddress(UInt64)
        /// The frame count is 0, above 2^32, or its pages pass 2^64.
        case frameCount(UInt64)
    }

    /// What is wrong with an in-flight description (GHT-INF-01).
    public enum InflightDefect: Hashable, Sendable {
        /// No queue.
        case queueCount(UInt16)
        /// Not from 1 to 32768.
        case queueSize(UInt16)
        /// 0, or beyond what a mapping can be.
        case mmapSize(UInt64)
        /// offset + size passes the largest file offset (2^63 − 1).
        case mmapOffset(UInt64)
    }
}
