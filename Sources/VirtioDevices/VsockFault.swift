/// What became of a packet the guest transmitted that the device did not take as it is: the
/// typed outcomes of GHT-VSK (each counted in ``VsockDevice/Statistics/faults``).
public enum VsockFault: String, Hashable, Sendable, CaseIterable {
    /// Fewer than 44 device-readable bytes: dropped (there is no address to answer).
    case shortHeader
    /// `len` beyond the chain's readable bytes after the header: reset.
    case lengthBeyondChain
    /// `src_cid` is not the guest's configured CID: dropped (no reset to an address that is
    /// not the guest's).
    case wrongSourceCID
    /// `dst_cid` is not the host (2): reset.
    case wrongDestinationCID
    /// `type` is not STREAM: reset.
    case unknownType
    /// `op` is none of REQUEST ... CREDIT_REQUEST: reset.
    case unknownOperation
    /// A packet other than REQUEST or RST for no open connection: reset.
    case unknownConnection
    /// A REQUEST while ``VsockDevice/maxConnections`` connections are open: reset.
    case tableFull
    /// RW data beyond the credit the device advertised: the connection is reset.
    case creditExceeded
    /// RW before the connection is established or after the guest shut down sending, a
    /// RESPONSE on an established one, a REQUEST for a connection already open: reset.
    case unexpectedOperation
    /// A reset the device owed the guest was dropped: ``VsockDevice/maxPendingResets`` were
    /// waiting for receive buffers already.
    case resetDropped
}
