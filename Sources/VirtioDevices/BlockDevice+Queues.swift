import VirtioCore
import VirtioTransport
import VirtioSystem

/// The queues' lifecycle on the io_uring path (GHT-BLK-13, GHT-BLK-27): one ring per queue,
/// made when the queue starts, serviced by the queue's worker, closed when the queue stops or
/// the device resets, after its I/O completed.
extension BlockDevice {
    public func queueStarted(_ queue: Int, doorbell: QueueDoorbell) {
        reapRetired()
        guard configuration.asynchronousIO == .ioUring, (0..<queueCount).contains(queue) else { return }
        let entries = min(max(configuration.ringEntries ?? configuration.maxQueueSize, 1), 4096)
        // GHT-BLK-13: no ring (refused, or VIRTIO_GRANT_AIO=sync) is the synchronous path.
        guard let ring = IOUring.make(entries: entries) else { return }
        let engine = BlockQueueEngine(ring: ring, file: file)
        let previous = engines.withLock { table in
            defer { table[queue] = engine }
            return table[queue]
        }
        if let previous { stop(previous) }
    }

    /// The queue's ring's completion eventfd: the worker watches it and calls
    /// ``serviceQueue(_:)`` when it fires. Asking for it turns the ring on for `process`.
    public func completionEvent(queue: Int) -> Doorbell? {
        engines.withLock { table in
            guard table.indices.contains(queue), let engine = table[queue] else { return nil }
            engine.isServiced = true
            return engine.ring.completionDoorbell
        }
    }

    /// Completes the requests whose I/O the kernel finished: no system call unless a held
    /// flush became ready to submit.
    public func serviceQueue(_ queue: Int) {
        // A polling worker calls this every round: with nothing posted it reaps nothing, records nothing.
        guard let engine = activeEngine(queue), engine.ring.readyCompletions > 0 || engine.ring.pendingSubmissions > 0 else { return }
        engine.reap()
        engine.submit()
        record(engine.takeTally())
    }

    public func queueStopped(_ queue: Int) {
        let engine = engines.withLock { table -> BlockQueueEngine? in
            guard table.indices.contains(queue) else { return nil }
            defer { table[queue] = nil }
            return table[queue]
        }
        if let engine { stop(engine) }
    }

    public func reset() {
        for queue in 0..<queueCount { queueStopped(queue) }
        reapRetired()
    }

    /// Requests of `queue` in the kernel now (tests, diagnostics).
    public func requestsInFlight(queue: Int) -> Int {
        engines.withLock { table in table.indices.contains(queue) ? table[queue]?.requestsInFlight ?? 0 : 0 }
    }

    /// The io_uring instances the device has open: one per started queue on the io_uring path,
    /// plus those stopped with I/O still in the kernel (GHT-BLK-22).
    public var ringsOpen: Int {
        engines.withLock { $0.compactMap { $0 }.count } + retired.withLock { $0.count }
    }

    /// The queue's engine when requests may be kept: a ring, and a worker that services it.
    func activeEngine(_ queue: Int) -> BlockQueueEngine? {
        engines.withLock { table in
            guard table.indices.contains(queue), let engine = table[queue], engine.isServiced else { return nil }
            return engine
        }
    }

    private func stop(_ engine: BlockQueueEngine, timeoutMilliseconds: Int32? = nil) {
        let done = engine.stop(timeoutMilliseconds: timeoutMilliseconds ?? configuration.stopTimeoutMilliseconds)
        record(engine.takeTally())
        if !done { retired.withLock { $0.append(engine) } }
    }

    /// Engines stopped with I/O in the kernel: closed once it completed.
    private func reapRetired() {
        let engines = retired.withLock { list in
            defer { list = [] }
            return list
        }
        for engine in engines { stop(engine, timeoutMilliseconds: 0) }
    }
}
