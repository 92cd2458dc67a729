import VirtioCore

extension GrantTable {
    /// Clears the in-use bits (GTF_reading, GTF_writing) of every entry granted to `peer`,
    /// once the connection that peer mapped them through has ended: its mappings ended with it
    /// (Spec/restart.md GHT-RCN-07). Xen does the same for a domain that dies
    /// (`gnttab_release_mappings`). The grants themselves stay: the peer's successor maps them
    /// again. Returns the number of entries whose bits were cleared.
    ///
    /// Only for a peer that can no longer write: a back-end whose connection reached end of
    /// file, before its successor is given the table. The bits are the mapping side's; a
    /// granter that clears them while the peer lives would let ``endAccess(_:)`` succeed under
    /// a live mapping.
    @discardableResult
    public func releaseMappings(of peer: DomainID) -> Int {
        var cleared = 0
        for r in GrantReference.reservedCount..<entries.count {
            let ref = GrantReference(rawValue: UInt32(r))
            var current = entries.load(ref)
            guard current.domain == peer, !current.flags.isDisjoint(with: .inUse), isAllocated(ref) else { continue }
            for _ in 0..<64 {
                guard current.domain == peer, !current.flags.isDisjoint(with: .inUse) else { break }
                var released = current
                released.flags.subtract(.inUse)
                let result = entries.compareExchangeHeader(ref, expected: current, desired: released)
                if result.exchanged {
                    cleared += 1
                    break
                }
                current = result.found
            }
        }
        return cleared
    }
}
