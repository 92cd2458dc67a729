/// The event-index suppression rule (VIRTIO 1.2 §2.7.7.2 and §2.7.10, `vring_need_event`).
public enum EventIndex {
    /// Whether moving an index from `old` to `new` passes the peer's published event index,
    /// that is whether `event` lies in `[old, new)` modulo 2^16.
    ///
    /// Formula: `(u16)(new − event − 1) < (u16)(new − old)`, all in 16-bit wrapping arithmetic
    /// (UNS-DEV-02, ANS-DRV-03).
    @inlinable
    public static func needsNotification(event: UInt16, new: UInt16, old: UInt16) -> Bool {
        new &- event &- 1 < new &- old
    }
}
