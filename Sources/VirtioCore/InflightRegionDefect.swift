/// What is wrong with a queue's in-flight area when a queue starts over it (Spec/restart.md
/// §1, GHT-INF-07). The area is peer-controlled memory: each case names the field that fails.
public enum InflightRegionDefect: Error, Hashable, Sendable {
    /// The area cannot hold the header and one entry per ring entry.
    case areaTooSmall(bytes: Int, queueSize: Int)
    /// The area was made for the other ring format.
    case format
    /// `version` is neither 0 (fresh) nor 1.
    case version(UInt16)
    /// `desc_num` differs from the ring's size.
    case descriptorCount(UInt16, queueSize: Int)
    /// The last batch (`used.idx − used_idx`) is longer than the ring.
    case batchTooLong(Int)
    /// A link of the last batch's list names no entry, or an entry the walk already met.
    case batchLink(UInt16)
    /// An entry's `inflight` byte is neither 0 nor 1.
    case flag(index: Int, value: UInt8)
    /// Two entries in flight carry the same counter, or a counter leaves no successor.
    case counter(index: Int, value: UInt64)
    /// Packed: a link of the free or descriptor list names no entry, or loops.
    case listLink(UInt16)
    /// Packed: an entry in flight describes no valid chain (`num` 0 or above the ring, or an
    /// `id` beyond the ring).
    case entry(index: Int)
    /// Packed: a position or wrap counter beyond the ring.
    case position(UInt16)
}
