import Synchronization
import VirtioCore
import VirtioSystem
import VirtioTransport

/// The checksum echo (``ChecksumEchoDevice``'s replies) completed late and out of order: every
/// request is kept (``RequestBatch/completeLater(_:)``) and answered from a thread of the
/// device's own; every second request (in the order they arrive) is held for
/// ``holdMilliseconds`` while the others are answered at once, so the requests completed
/// leave holes among those still inside the device, and the ones that come due together are
/// answered newest first. What a back-end with an asynchronous device looks like when it is killed: requests
/// inside the device, taken from the ring and not completed, completed in no particular order
/// — the case in-flight tracking and reconnection exist for (Spec/restart.md).
/// `serve --device checksum-late [--hold-ms N]`.
public final class LateChecksumDevice: VirtioDevice, @unchecked Sendable {
    public let deviceID: UInt32 = 0xFFFF
    public let deviceFeatures: VirtioFeatures = []
    public let queueCount: Int
    public let maxQueueSize: Int
    /// How long every second request stays in the device at least.
    public let holdMilliseconds: Int
    private let kept: Kept
    private let answerer: WorkerThread?

    /// The requests kept, each with the monotonic time it comes due, and the answering thread's
    /// stop flag: shared with that thread, which must not keep the device alive.
    private final class Kept: Sendable {
        let requests = Locked<(arrived: UInt64, kept: [(request: InFlightRequest, due: UInt64)])>((0, []))
        let stopping = Atomic<Bool>(false)
        let wake: Doorbell?

        init() { wake = try? Doorbell() }

        /// The requests due at `now` in the order they arrived, or every one.
        func take(dueBy now: UInt64 = .max) -> [InFlightRequest] {
            requests.withLock { r in
                let due = r.kept.filter { $0.due <= now }.map(\.request)
                if !due.isEmpty { r.kept.removeAll { $0.due <= now } }
                return due
            }
        }
    }

    public init(queueCount: Int = 1, maxQueueSize: Int = 32768, holdMilliseconds: Int = 2) {
        self.queueCount = queueCount
        self.maxQueueSize = maxQueueSize
        self.holdMilliseconds = max(holdMilliseconds, 0)
        let kept = Kept()
        self.kept = kept
        let tick = Int32(clamping: max(1, holdMilliseconds / 4))
        // Without a thread (or a doorbell to stop it) requests are answered in `process`, in order.
        answerer = kept.wake == nil ? nil : try? WorkerThread.start(name: "late-answers") {
            while !kept.stopping.load(ordering: .acquiring) {
                _ = try? kept.wake?.wait(timeoutMilliseconds: tick)
                Self.answer(kept.take(dueBy: SystemClock.monotonic.nanoseconds).reversed())
            }
        }
    }

    deinit {
        kept.stopping.store(true, ordering: .releasing)
        try? kept.wake?.signal()
        answerer?.join()
    }

    public func readConfig() -> [UInt8] { ChecksumEchoDevice.configSpace(queueCount: queueCount, maxQueueSize: maxQueueSize) }

    /// Dropped, not answered: their queue was reset, so a completion would be refused anyway.
    public func reset() { _ = kept.take() }

    public func process(queue: Int, batch: inout RequestBatch) {
        guard answerer != nil else {
            ChecksumEchoDevice(queueCount: queueCount, maxQueueSize: maxQueueSize).process(queue: queue, batch: &batch)
            return
        }
        let now = SystemClock.monotonic.nanoseconds
        let held = now &+ UInt64(holdMilliseconds) &* 1_000_000
        var taken: [InFlightRequest] = []
        taken.reserveCapacity(batch.count)
        for i in 0..<batch.count { taken.append(batch.completeLater(i)) }
        kept.requests.withLock { r in
            for request in taken {
                r.kept.append((request, r.arrived & 1 == 1 ? held : now))
                r.arrived &+= 1
            }
        }
    }

    /// Answers `requests` in the order given; a completion refused (its queue stopped, was
    /// reset or broke) is dropped.
    private static func answer(_ requests: some Sequence<InFlightRequest>) {
        withUnsafeTemporaryAllocation(byteCount: ChecksumEchoDevice.chunkSize, alignment: 16) { chunk in
            for request in requests {
                var reader = request.reader()
                request.complete(with: ChecksumEchoDevice.answer(&reader, request.writer(), chunk: chunk))
            }
        }
    }
}
