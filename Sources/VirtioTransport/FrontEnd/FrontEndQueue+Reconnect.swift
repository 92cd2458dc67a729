import VirtioCore
import VirtioSystem

/// A queue's part in a reconnection (Spec/restart.md §2): where it stands once its back-end is
/// gone, and its ring handed to the next back-end.
extension FrontEndQueue {
    /// Takes back every chain the gone back-end completed (kept for the caller: they are
    /// handed out by the next reap, once, GHT-RCN-04) and returns the base to resume at — the
    /// used position the front-end now sees, as QEMU sends after a crash (its
    /// `virtio_queue_restore_last_avail_idx`): a split ring's used index, or a packed ring's
    /// used slot and wrap counter in both halves (GHT-RCN-03) — and the chains still out (added,
    /// published or not, and not completed).
    func prepareResume() throws(FrontEndError) -> (base: UInt32, outstanding: Int) {
        try lock.withLock { _ throws(FrontEndError) in
            _ = try reapRing { token, reply in pending.append((token, Array(reply))) }
            return driver!.resumePosition
        }
    }

    /// Watches `connection` for the back-end's end (token 2).
    func watchConnection(_ connection: UnixSocket) throws(FrontEndError) {
        do { try poller.add(connection.fd, token: 2) } catch { throw .system(error) }
    }

    /// Stops watching `connection` (not watched, or already closed: nothing to do).
    func unwatchConnection(_ connection: UnixSocket) {
        try? poller.remove(connection.fd)
    }

    /// Rings the kick doorbell: after a reconnection the back-end looks at the ring at once,
    /// whatever notification suppression its predecessor had asked for (GHT-RCN-03).
    func kickOnce() throws(FrontEndError) {
        do { try kick.signal() } catch { throw .system(error) }
    }
}
