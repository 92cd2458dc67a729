#if canImport(Glibc)
import Glibc
#endif
import CVirtioShim

/// What a ``Poller`` reports a descriptor for, besides hangup and errors (which are always
/// reported).
public struct PollInterest: OptionSet, Hashable, Sendable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// Data or end of stream can be read without blocking (`EPOLLIN | EPOLLRDHUP`).
    public static let readable = PollInterest(rawValue: 1)
    /// Bytes can be sent without blocking (`EPOLLOUT`).
    public static let writable = PollInterest(rawValue: 2)

    var events: UInt32 {
        (contains(.readable) ? EPOLLIN.rawValue | EPOLLRDHUP.rawValue : 0) | (contains(.writable) ? EPOLLOUT.rawValue : 0)
    }
}

extension Poller {
    /// Watches `descriptor` for `interest`, reporting it with `token` (level-triggered, as
    /// ``add(_:token:)``). An empty interest still reports hangup and errors.
    ///
    /// The corresponding C call is `epoll_ctl(EPOLL_CTL_ADD)`.
    public func add(_ descriptor: FileDescriptor, token: UInt64, interest: PollInterest) throws(SystemError) {
        try control(EPOLL_CTL_ADD, descriptor, token: token, interest: interest)
    }

    /// Changes what `descriptor`, already watched, is reported for, and its token.
    ///
    /// The corresponding C call is `epoll_ctl(EPOLL_CTL_MOD)`.
    public func modify(_ descriptor: FileDescriptor, token: UInt64, interest: PollInterest) throws(SystemError) {
        try control(EPOLL_CTL_MOD, descriptor, token: token, interest: interest)
    }

    private func control(_ operation: Int32, _ descriptor: FileDescriptor, token: UInt64, interest: PollInterest) throws(SystemError) {
        let epoll = fd.rawValue
        let target = descriptor.rawValue
        var event = epoll_event()
        event.events = interest.events
        event.data.u64 = token
        try nothingOrErrno("epoll_ctl") { epoll_ctl(epoll, operation, target, &event) }
    }
}
