import VirtioCore
import VirtioGrants

/// How a front-end drives a back-end.
public struct FrontEndConfiguration: Sendable {
    /// How buffers are named in descriptors.
    public enum AddressMode: Sendable, Equatable {
        /// Grant handles (ACCESS_PLATFORM with a grant table): the back-end reaches only what
        /// is granted, with the access granted.
        case grants
        /// Guest-physical addresses into the shared pool (ACCESS_PLATFORM not negotiated).
        case guestPhysical
    }

    /// The virtqueue format (VIRTIO 1.2 §2.7 split, §2.8 packed).
    public enum RingFormat: String, Sendable, Equatable {
        case split, packed
    }

    public var mode: AddressMode = .grants
    /// Packed rings need RING_PACKED offered (negotiation fails otherwise).
    public var ring: RingFormat = .split
    /// This front-end's domain (the granter).
    public var domain = DomainID(1)
    /// The back-end's domain (the grantee).
    public var backEndDomain = DomainID(0)
    /// Queues to set up (at most the device's).
    public var queueCount = 1
    public var queueSize = 256
    /// Bytes of the largest request and of the largest reply.
    public var maxRequestSize = 64 * 1024
    public var maxReplySize = 64 * 1024
    /// Requests in flight per queue (each has its own request and reply buffers).
    public var maxOutstanding = 64
    /// Device-type feature bits to accept when the device offers them (bits 0–23, 50–63;
    /// VIRTIO 1.2 §5): a block device's DISCARD, say. Others are never accepted.
    public var deviceFeatures: VirtioFeatures = []
    /// Use EVENT_IDX and INDIRECT_DESC when offered.
    public var useEventIndex = true
    public var useIndirectDescriptors = true
    /// Zero a request's and its reply's bytes in the shared files after each completion, so
    /// that a slot not in flight holds nothing (Spec/hostile-peers.md GHT-HBE-06). Off by
    /// default: the slots stay granted to the back-end, which saw those bytes already, and the
    /// two extra passes over every payload cost throughput. Pages are always zeroed when their
    /// grants end (GHT-HBE-04).
    public var scrubsCompletedSlots = false
    /// How long to wait for a reply or a completion.
    public var timeoutMilliseconds: Int32 = 5000

    /// Whether STATUS must be offered (it is optional in vhost-user; libvhost-user lacks it).
    public var requiresStatus = true
    /// Whether the read-only file is sealed against the back-end's writable mappings
    /// (libvhost-user maps every region read-write and fails on a sealed one).
    public var sealsReadOnlyMemory = true
    /// Whether and how to reconnect to a back-end that went away (GHT-RCN-01); nil (the
    /// default): its end is ``FrontEndError/disconnected``.
    public var reconnect: FrontEndReconnectPolicy?

    public init() {}
}
