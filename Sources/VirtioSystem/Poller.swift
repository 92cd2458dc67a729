#if canImport(Glibc)
import Glibc
#endif
import CVirtioShim

/// One readiness report from ``Poller/wait(timeoutMilliseconds:into:maxEvents:)``.
public struct PollEvent: Hashable, Sendable {
    /// The token the descriptor was registered with.
    public var token: UInt64
    /// Data (or a doorbell signal, or a pending connection) can be read without blocking
    /// (`EPOLLIN`).
    public var isReadable: Bool
    /// The peer closed its end or shut down writing (`EPOLLHUP` or `EPOLLRDHUP`). A read still
    /// returns whatever was sent before, then 0.
    public var isHangup: Bool
    /// An error is pending on the descriptor (`EPOLLERR`).
    public var isError: Bool
    /// Bytes can be sent without blocking (`EPOLLOUT`; only for a descriptor watched with
    /// ``PollInterest/writable``).
    public var isWritable = false

    public init(token: UInt64, isReadable: Bool, isHangup: Bool, isError: Bool, isWritable: Bool = false) {
        self.token = token
        self.isReadable = isReadable
        self.isHangup = isHangup
        self.isError = isError
        self.isWritable = isWritable
    }
}

/// Waits for any of several descriptors (doorbells, sockets) to become readable: an epoll
/// instance.
///
/// Registration is level-triggered: a descriptor is reported on every wait for as long as it
/// is readable, so a doorbell must be drained (``Doorbell/drain()``) once it is reported.
/// Signals coalesce in the eventfd itself, not here: many kicks between two waits produce one
/// event, and the drain returns their number.
///
/// A descriptor leaves the set when ``remove(_:)`` is called or when the last descriptor for
/// its open file description is closed. Several threads may wait on one poller.
public final class Poller: Sendable {
    /// The epoll descriptor.
    public let fd: FileDescriptor

    /// An empty set. The corresponding C call is `epoll_create1(EPOLL_CLOEXEC)`.
    public init() throws(SystemError) {
        fd = FileDescriptor(adopting: try valueOrErrno("epoll_create1") { epoll_create1(Int32(EPOLL_CLOEXEC)) })
    }

    /// Watches `descriptor` for readability and hangup, reporting it with `token`.
    ///
    /// The corresponding C call is `epoll_ctl(EPOLL_CTL_ADD)` with
    /// `EPOLLIN | EPOLLRDHUP`. Adding a descriptor twice fails with `EEXIST`.
    public func add(_ descriptor: FileDescriptor, token: UInt64) throws(SystemError) {
        let epoll = fd.rawValue
        let target = descriptor.rawValue
        var event = epoll_event()
        event.events = EPOLLIN.rawValue | EPOLLRDHUP.rawValue
        event.data.u64 = token
        try nothingOrErrno("epoll_ctl(EPOLL_CTL_ADD)") { epoll_ctl(epoll, EPOLL_CTL_ADD, target, &event) }
    }

    /// Stops watching `descriptor`. The corresponding C call is `epoll_ctl(EPOLL_CTL_DEL)`.
    public func remove(_ descriptor: FileDescriptor) throws(SystemError) {
        let epoll = fd.rawValue
        let target = descriptor.rawValue
        try nothingOrErrno("epoll_ctl(EPOLL_CTL_DEL)") { epoll_ctl(epoll, EPOLL_CTL_DEL, target, nil) }
    }

    /// Waits until at least one watched descriptor is ready or the timeout passes.
    ///
    /// The corresponding C call is `epoll_wait`. `events` is emptied (keeping its capacity)
    /// and refilled, so a caller that reuses one array does not allocate per wait.
    ///
    /// - Parameters:
    ///   - timeoutMilliseconds: 0 only checks, a negative value waits forever.
    ///   - events: Receives one ``PollEvent`` per ready descriptor.
    ///   - maxEvents: The most events reported by one call (at least 1); the rest are
    ///     reported by the next call.
    /// - Returns: The number of events, 0 on timeout.
    @discardableResult
    public func wait(
        timeoutMilliseconds: Int32, into events: inout [PollEvent], maxEvents: Int = 64
    ) throws(SystemError) -> Int {
        precondition(maxEvents > 0, "maxEvents must be positive")
        events.removeAll(keepingCapacity: true)
        let epoll = fd.rawValue
        let timeout = Timeout(milliseconds: timeoutMilliseconds)
        return try withUnsafeTemporaryAllocation(of: epoll_event.self, capacity: maxEvents) { buffer throws(SystemError) in
            let count = Int(try valueOrErrno("epoll_wait") {
                epoll_wait(epoll, buffer.baseAddress, Int32(clamping: buffer.count), timeout.remainingMilliseconds())
            })
            for event in buffer[..<count] {
                events.append(PollEvent(
                    token: event.data.u64,
                    isReadable: event.events & EPOLLIN.rawValue != 0,
                    isHangup: event.events & (EPOLLHUP.rawValue | EPOLLRDHUP.rawValue) != 0,
                    isError: event.events & EPOLLERR.rawValue != 0,
                    isWritable: event.events & EPOLLOUT.rawValue != 0))
            }
            return count
        }
    }
}
