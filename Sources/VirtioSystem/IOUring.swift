#if canImport(Glibc)
import Glibc
#endif
import CVirtioShim

/// An io_uring instance (io_uring_setup(2)), through the raw system calls of the C shim: many
/// file operations in the kernel at once, submitted in batches and completed out of order.
///
/// - Entries are prepared in the shared submission ring (``prepareReadv(_:at:buffers:userData:flags:)``
///   and the others in `IOUring+Submission.swift`) and handed to the kernel by one
///   ``submit()`` per batch: one `io_uring_enter` however many entries.
/// - Completions are reaped from the shared completion ring with no system call (``reap(_:)``):
///   a load-acquire of the tail, a store-release of the head.
/// - The kernel signals ``completionDoorbell`` (an eventfd registered with
///   IORING_REGISTER_EVENTFD) whenever it posts completions, so a worker that sleeps in epoll
///   wakes for them beside its other doorbells.
///
/// At most ``completionCapacity`` operations are in flight (prepared and not reaped), so the
/// completion ring never overflows. An instance has one owner at a time: it is not safe to
/// call from two threads at once (hand it over with a lock or a thread start).
public final class IOUring: @unchecked Sendable {
    /// The environment variable that turns io_uring off for the whole process
    /// (`VIRTIO_GRANT_AIO=sync`): ``make(entries:)`` then answers nil and callers take their
    /// synchronous path.
    public static let environmentSwitch = "VIRTIO_GRANT_AIO"

    /// The submission ring's size (the entries asked for, rounded up to a power of 2, at most
    /// the kernel's maximum).
    public let submissionCapacity: Int
    /// The completion ring's size (twice the submission ring's): the bound on operations in flight.
    public let completionCapacity: Int
    /// Signalled by the kernel when it posts completions (IORING_REGISTER_EVENTFD).
    public let completionDoorbell: Doorbell
    /// Operations prepared and not yet reaped.
    public internal(set) var inFlight = 0

    let ring: UnsafeMutablePointer<CVirtioShim_uring>
    /// The ring's own descriptor (tests check it is closed exactly once).
    package let fd: FileDescriptor
    /// iovec lists of the entries prepared and not yet consumed by the kernel (it copies them at
    /// submission: IORING_FEAT_SUBMIT_STABLE); reused once the submission ring is empty.
    let iovecs: UnsafeMutableBufferPointer<iovec>
    var iovecsUsed = 0
    private let reaped: UnsafeMutableBufferPointer<CVirtioShim_uring_completion>
    private var closed = false

    /// The iovecs one batch may hold before it must be submitted: `IOV_MAX` (one request of the
    /// largest vector), or four per submission entry if that is more.
    static func iovecCapacity(entries: Int) -> Int { max(1024, entries * 4) }

    /// A ring of `entries` submission entries (rounded up to a power of 2; the kernel clamps
    /// it to its maximum) with its completion eventfd registered.
    ///
    /// - Throws: `SystemError` from `io_uring_setup` (`ENOSYS` on a kernel without io_uring,
    ///   `EPERM` where `/proc/sys/kernel/io_uring_disabled` forbids it, `ENOMEM` past the
    ///   locked-memory limit), `mmap`, `eventfd` or `io_uring_register`.
    public init(entries: Int) throws(SystemError) {
        let doorbell = try Doorbell()
        let ring = UnsafeMutablePointer<CVirtioShim_uring>.allocate(capacity: 1)
        let wanted = UInt32(clamping: entries)
        do {
            try nothingOrErrno("io_uring_setup") { CVirtioShim_uring_setup(wanted, ring) }
        } catch {
            ring.deallocate()
            throw error
        }
        self.ring = ring
        completionDoorbell = doorbell
        fd = FileDescriptor(adopting: ring.pointee.fd)
        submissionCapacity = Int(ring.pointee.sq_entries)
        completionCapacity = Int(ring.pointee.cq_entries)
        iovecs = .allocate(capacity: Self.iovecCapacity(entries: submissionCapacity))
        reaped = .allocate(capacity: completionCapacity)
        do {
            let ringFD = fd.rawValue, eventFD = doorbell.fd.rawValue
            try nothingOrErrno("io_uring_register(EVENTFD)") { CVirtioShim_uring_register_eventfd(ringFD, eventFD) }
        } catch {
            close()
            throw error
        }
    }

    /// A ring, or nil where io_uring cannot be used: turned off (`turnedOff`, by default
    /// ``environmentSwitch`` set to `sync`), or refused by the kernel (``init(entries:)``
    /// failed: `ENOSYS`, `EPERM`, `EINVAL`, `ENOMEM`). The caller then does its I/O synchronously.
    public static func make(entries: Int, turnedOff: Bool = isTurnedOff(environment: Environment.value(environmentSwitch))) -> IOUring? {
        if turnedOff { return nil }
        return try? IOUring(entries: entries)
    }

    /// Whether a value of ``environmentSwitch`` turns io_uring off: `sync`.
    public static func isTurnedOff(environment value: String?) -> Bool { value == "sync" }

    deinit { close() }

    /// Hands every prepared entry to the kernel: one `io_uring_enter` (more only when the
    /// kernel takes part of the batch). Returns how many entries the kernel took.
    @discardableResult
    public func submit() throws(SystemError) -> Int {
        var total = 0
        var pending = CVirtioShim_uring_publish(ring)
        let ringFD = fd.rawValue
        while pending > 0 {
            let count = pending
            let taken = try valueOrErrno("io_uring_enter") { CVirtioShim_uring_enter(ringFD, count, 0, 0) }
            total += Int(taken)
            pending = CVirtioShim_uring_publish(ring)
            if taken == 0 { break }
        }
        if pending == 0 { iovecsUsed = 0 }
        return total
    }

    /// Entries prepared and not taken by the kernel yet.
    public var pendingSubmissions: Int { Int(CVirtioShim_uring_publish(ring)) }

    /// Completions the kernel posted and nobody reaped yet.
    public var readyCompletions: Int { Int(CVirtioShim_uring_ready(ring)) }

    /// Calls `body` with each completion the kernel posted, in the order it posted them, with
    /// no system call. Returns how many.
    @discardableResult
    public func reap(_ body: (IOUringCompletion) -> Void) -> Int {
        var total = 0
        while true {
            let n = Int(CVirtioShim_uring_reap(ring, reaped.baseAddress!, UInt32(reaped.count)))
            if n == 0 { return total }
            inFlight -= n
            total += n
            for k in 0..<n { body(IOUringCompletion(userData: reaped[k].user_data, result: reaped[k].result)) }
        }
    }

    /// Waits until at least `minimum` completions are ready or `timeoutMilliseconds` passed
    /// (`io_uring_enter` with GETEVENTS and a timeout); returns whether they are.
    public func wait(minimum: Int = 1, timeoutMilliseconds: Int32) throws(SystemError) -> Bool {
        let ringFD = fd.rawValue
        let wanted = UInt32(clamping: minimum)
        let timeout = Timeout(milliseconds: timeoutMilliseconds)
        while readyCompletions < minimum {
            let left = timeout.remainingMilliseconds()
            if left == 0 { return false }
            do {
                _ = try valueOrErrno("io_uring_enter(GETEVENTS)") {
                    CVirtioShim_uring_wait(ringFD, wanted, Int64(left < 0 ? 3_600_000 : left) * 1_000_000)
                }
            } catch where error.errno == ETIME {
                continue
            }
        }
        return true
    }

    /// Reaps until nothing is in flight, waiting for the kernel as long as it takes at most
    /// `timeoutMilliseconds`; returns whether nothing is left in flight. Entries prepared but
    /// never submitted are submitted first (they complete like the others).
    public func drain(timeoutMilliseconds: Int32, _ body: (IOUringCompletion) -> Void) throws(SystemError) -> Bool {
        try submit()
        let timeout = Timeout(milliseconds: timeoutMilliseconds)
        reap(body)
        while inFlight > 0 {
            guard try wait(minimum: 1, timeoutMilliseconds: timeout.remainingMilliseconds()) else { return false }
            reap(body)
        }
        return true
    }

    /// Unmaps the rings and closes the instance and its eventfd. Operations still in flight are
    /// cancelled or finished by the kernel on its own; an owner whose buffers must outlive them
    /// calls ``drain(timeoutMilliseconds:_:)`` first.
    public func close() {
        guard !closed else { return }
        closed = true
        CVirtioShim_uring_unmap(ring)
        fd.close()
        completionDoorbell.close()
        ring.deallocate()
        iovecs.deallocate()
        reaped.deallocate()
    }
}

/// One completion of an ``IOUring`` (`struct io_uring_cqe`): the `userData` its submission
/// carried and what the operation returned.
public struct IOUringCompletion: Sendable, Equatable {
    public var userData: UInt64
    /// The operation's return value (bytes moved, or 0), or `-errno`.
    public var result: Int32

    public init(userData: UInt64, result: Int32) {
        self.userData = userData
        self.result = result
    }

    /// The bytes moved (or 0), or the failure as a `SystemError` naming `operation`.
    public func value(_ operation: StaticString) throws(SystemError) -> Int {
        try completionOrErrno(operation, result)
    }
}
