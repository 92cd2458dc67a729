/// When and for how long a ``FrontEnd`` reconnects to a back-end that went away
/// (Spec/restart.md §2, GHT-RCN-01..): QEMU's `-chardev socket,...,reconnect=N` for our own
/// front-end.
///
/// With a policy, a back-end whose connection ends (end of file, `EPIPE`, `ECONNRESET`: it was
/// killed, crashed or restarted) is reconnected to at the same socket path, the setup is
/// replayed and the requests in flight complete once, from the new back-end. Without one (the
/// default) the connection's end is ``FrontEndError/disconnected``, as before.
public struct FrontEndReconnectPolicy: Sendable, Equatable {
    /// How long to wait between two connection attempts while nothing listens at the path.
    public var retryIntervalMilliseconds: Int32
    /// How long one reconnection may take in all, from the moment the connection was seen to
    /// end to the end of the replay: past it the front-end gives up with
    /// ``FrontEndError/timedOut(_:)`` and stays disconnected.
    public var timeLimitMilliseconds: Int32

    public init(retryIntervalMilliseconds: Int32 = 50, timeLimitMilliseconds: Int32 = 10_000) {
        self.retryIntervalMilliseconds = max(retryIntervalMilliseconds, 1)
        self.timeLimitMilliseconds = max(timeLimitMilliseconds, 0)
    }
}
