import VirtioCore
import VirtioTransport
import VirtioSystem

/// One queue's asynchronous I/O (GHT-BLK-13): its io_uring and the requests it has in the
/// kernel. Requests are checked in `process` as on the synchronous path, kept
/// (`RequestBatch.completeLater`), and their I/O prepared here; one `submit` per batch hands
/// them to the kernel, and `serviceQueue` completes them as the kernel finishes them, in any
/// order (GHT-BLK-14, GHT-BLK-15).
///
/// Used by the queue's worker thread only (`process`, `serviceQueue`), and by `queueStopped`
/// once that worker no longer calls in; never by two threads at once.
final class BlockQueueEngine: @unchecked Sendable {
    /// One kept request.
    struct Slot {
        enum Kind { case read, write, flush, ranges }
        var request: InFlightRequest?
        var kind: Kind = .read
        var offset: UInt64 = 0
        var bytes = 0
        /// Ring operations of this request not completed yet (a range list has one per range).
        var pending = 0
        var failed = false
        /// Bytes a read found before the end of the file (a short read), else `bytes`.
        var produced = 0
        /// A write's place in the queue's order of writes; a held flush's barrier.
        var sequence: UInt64 = 0
        /// Aligned memory for an O_DIRECT transfer whose guest buffers are not (GHT-BLK-24).
        var bounce: UnsafeMutableRawBufferPointer?
        var ranges: [BlockRange] = []
    }

    let ring: IOUring
    let file: StorageFile
    var slots: [Slot]
    var free: [Int]
    /// Flushes waiting for the writes made available before them (GHT-BLK-18).
    var heldFlushes: [Int] = []
    var nextWriteSequence: UInt64 = 0
    var writesInFlight = 0
    var requestsInFlight = 0
    /// Counts since the device last took them (`serviceQueue`, `process`).
    var tally = BlockDevice.Statistics()
    /// Set when the worker asked for the completion doorbell: only then does anyone call
    /// `serviceQueue`, so only then are requests kept (a wrapper that does not forward
    /// `completionEvent` keeps the synchronous path).
    var isServiced = false

    init(ring: IOUring, file: StorageFile) {
        self.ring = ring
        self.file = file
        slots = [Slot](repeating: Slot(), count: ring.completionCapacity)
        free = Array((0..<ring.completionCapacity).reversed())
    }

    /// Keeps `request` and prepares its I/O; it completes in a later `reap`. A request the ring
    /// cannot carry (more buffers than one entry takes) is served at once, synchronously.
    func start(_ operation: BlockOperation, _ request: InFlightRequest, device: BlockDevice) {
        let needed: Int
        if case .ranges(let list) = operation { needed = list.count } else { needed = 1 }
        guard makeRoom(for: needed) else { return serveNow(operation, request, device: device) }
        let index = free.removeLast()
        slots[index] = Slot(request: request)
        var prepared = false
        switch operation {
        case .read(let offset, let count):
            slots[index].kind = .read
            prepared = prepareRead(index, offset, count, request)
        case .write(let offset, let count):
            slots[index].kind = .write
            prepared = prepareWrite(index, offset, count, request)
        case .flush:
            slots[index].kind = .flush
            prepared = true
            // GHT-BLK-18: a flush waits for every write made available before it.
            if writesInFlight > 0 {
                slots[index].sequence = nextWriteSequence
                heldFlushes.append(index)
                tally.flushesHeld += 1
            } else {
                prepared = prepareFlush(index)
            }
        case .ranges(let list):
            slots[index].kind = .ranges
            slots[index].ranges = list
            prepared = prepareRanges(index, list)
        case .done:
            prepared = false
        }
        guard prepared else {
            release(index)
            return serveNow(operation, request, device: device)
        }
        if slots[index].kind == .write {
            slots[index].sequence = nextWriteSequence
            nextWriteSequence += 1
            writesInFlight += 1
        }
        requestsInFlight += 1
        tally.submitted += 1
        tally.peakInFlight = max(tally.peakInFlight, UInt64(requestsInFlight))
    }

    /// Hands what was prepared to the kernel: once per batch.
    func submit() {
        // A failed io_uring_enter leaves the entries in the ring; the next submit retries them.
        _ = try? ring.submit()
    }

    /// Whether `needed` operations and one request fit now; submits and reaps (completing
    /// requests) to make room, waiting for the kernel at most a second.
    private func makeRoom(for needed: Int) -> Bool {
        guard needed <= ring.submissionCapacity else { return false }
        let deadline = SystemClock.monotonic.nanoseconds + 1_000_000_000
        while free.isEmpty || ring.inFlight + needed > ring.completionCapacity {
            submit()
            reap()
            if !free.isEmpty && ring.inFlight + needed <= ring.completionCapacity { break }
            let now = SystemClock.monotonic.nanoseconds
            guard now < deadline, (try? ring.wait(minimum: 1, timeoutMilliseconds: Int32((deadline - now) / 1_000_000) + 1)) == true else {
                return false
            }
        }
        if ring.pendingSubmissions + needed > ring.submissionCapacity { submit() }
        return true
    }

    /// Prepares one operation, submitting the batch so far once if the ring is full.
    func prepare(_ body: () throws(IOUringPrepareFailure) -> Void) -> Bool {
        do throws(IOUringPrepareFailure) {
            try body()
            return true
        } catch .full {
            submit()
            return (try? body()) != nil
        } catch {
            return false
        }
    }

    private func serveNow(_ operation: BlockOperation, _ request: InFlightRequest, device: BlockDevice) {
        var reader = request.reader()
        var writer = request.writer()
        // The header was decided on already: skipped, not read again (GHT-ONE-01).
        reader.skip(BlockRequestHeader.byteCount)
        let status = device.perform(operation, &reader, &writer, &tally)
        BlockDevice.finish(status, &writer, &tally)
        tally.synchronousFallbacks += 1
        request.complete(with: writer)
    }

    /// Frees slot `index` (its bounce buffer with it).
    func release(_ index: Int) {
        slots[index].bounce?.deallocate()
        slots[index] = Slot()
        free.append(index)
    }
}
