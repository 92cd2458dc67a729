import CVirtioShim

/// The process-wide guard against a peer that shrinks a file we map (Spec/hostile-peers.md
/// GHT-LIFE-03). A memfd a front-end sends without `F_SEAL_SHRINK` (DPDK's virtio-user and UML
/// send such files) can be truncated at any moment; the next access to a lost page raises
/// `SIGBUS`, which by default kills the process and every session in it.
///
/// ``SharedMemory/map(fd:size:offset:requiringSealedSize:)`` registers every mapping of a
/// peer's file here. The guard's `SIGBUS` handler (in the C shim: only atomics and a raw
/// `mmap`) maps a private zero page over a faulting page of a registered mapping, so the access
/// completes on zeros, and marks the mapping poisoned; a `SIGBUS` anywhere else reaches the
/// handler that was installed before. The transport checks ``epoch`` once per batch (one atomic
/// load) and, when it moved, whether its memory is poisoned: the queue breaks and the session
/// ends, so a truncation costs only the session that did it.
public enum TruncationGuard {
    /// Mappings the guard can watch at once; a mapping beyond them is not guarded
    /// (``SharedMemory/isGuarded`` is false, and the back-end refuses it: GHT-LIM-01).
    public static let capacity = 4096

    /// Installs the handler (idempotent; ``SharedMemory`` does it on its first guarded mapping).
    @discardableResult
    public static func install() -> Bool { CVirtioShim_guard_install() == 0 }

    /// Bumped each time the guard poisons a page. Compare with a value read earlier: equal means
    /// no guarded mapping lost a page since.
    @inline(__always)
    public static var epoch: UInt64 { CVirtioShim_guard_epoch() }

    /// Pages the guard replaced since the process started.
    public static var poisonedPages: UInt64 { CVirtioShim_guard_poisoned_pages() }
}

/// A mapping of a peer's file that the truncation guard watches (GHT-LIFE-03).
public protocol TruncationGuarded: AnyObject, Sendable {
    /// Whether an access met a page the peer took away (the page now reads as zeros, privately).
    var isPoisoned: Bool { get }
}

extension SharedMemory: TruncationGuarded {}
