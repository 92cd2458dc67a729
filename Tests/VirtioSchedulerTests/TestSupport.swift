#if canImport(Glibc)
import VirtioSystem
import Glibc
#endif
import Foundation
import Synchronization
import VirtioSystem
import VirtioCore
import VirtioDevices
import VirtioTransport
@testable import VirtioScheduler

/// A value shared between test threads, behind a lock.
final class Shared<Value: Sendable>: Sendable {
    private let lock: Locked<Value>

    init(_ value: Value) { lock = Locked(value) }

    var value: Value { lock.withLock { $0 } }

    func store(_ value: Value) { lock.withLock { $0 = value } }

    @discardableResult
    func update<R: Sendable>(_ body: (inout Value) -> R) -> R { lock.withLock { body(&$0) } }
}

/// A thread the test can wait for with a time limit: a broken scheduler that blocks a guest
/// forever fails the test instead of hanging it.
final class TestThread: Sendable {
    private let finished = DispatchSemaphore(value: 0)

    init(_ body: @escaping @Sendable () -> Void) {
        let finished = finished
        let thread = Thread {
            body()
            finished.signal()
        }
        thread.start()
    }

    /// Whether the thread finished within `seconds` (it may be asked again).
    @discardableResult
    func join(timeout seconds: Double) -> Bool {
        guard finished.wait(timeout: .now() + seconds) == .success else { return false }
        finished.signal()
        return true
    }
}

/// Called by a greedy test guest as it begins a batch. A real queue worker sleeps between
/// batches; these threads spin. On two cores the guest whose turn just ended can sit runnable
/// behind the new holder on its core for milliseconds, out of obtain and so not waiting as far
/// as the scheduler can tell. The holder yielding lets it get back into obtain; yielding there
/// (not after finishBatch) keeps the guest between its batches for as short as possible when
/// other processes load the machine.
func yieldProcessor() { sched_yield() }

/// Busy-waits `nanoseconds`: a request the device works on.
func spin(nanoseconds: UInt64) {
    let end = SystemClock.monotonic.nanoseconds &+ nanoseconds
    while SystemClock.monotonic.nanoseconds < end {}
}

func sleep(milliseconds: Int) { Thread.sleep(forTimeInterval: Double(milliseconds) / 1000) }

/// Seconds since `start` (a ``SystemClock/monotonic`` reading).
func seconds(since start: UInt64) -> Double { Double(SystemClock.monotonic.nanoseconds &- start) / 1e9 }

/// A request with no bytes (for the opaque model, which checks nothing but the context).
func emptyRequest(queue: Int = 0) -> ModelRequest {
    ModelRequest(queue: queue, reader: FragmentReader([], 0..<0), writableBytes: 0)
}

extension DeviceScheduler {
    /// Starts one request on the leased function (the model counts it in flight).
    func startRequest(_ lease: FunctionLease) throws(SchedulerError) -> ModelVerdict where Model == OpaqueDeviceModel {
        try withFunction(lease) { model, _ in
            var request = emptyRequest()
            return model.start(&request)
        }
    }

    /// Finishes one request on the leased function.
    func finishRequest(_ lease: FunctionLease, queue: Int = 0) throws(SchedulerError) {
        try withFunction(lease) { model, _ in model.finish(queue: queue) }
    }

    /// One batch of `requests` requests of `nanoseconds` each, from obtain to finishBatch.
    @discardableResult
    func runBatch(_ guest: DomainID, requests: Int, nanoseconds: UInt64, bytes: Int = 0) throws(SchedulerError) -> FunctionLease
        where Model == OpaqueDeviceModel {
        let lease = try obtain(guest)
        yieldProcessor()
        try serveBatch(lease, requests: requests, nanoseconds: nanoseconds, bytes: bytes)
        return lease
    }

    /// On a function already obtained: `requests` requests of `nanoseconds` each, then finishBatch.
    func serveBatch(_ lease: FunctionLease, requests: Int, nanoseconds: UInt64, bytes: Int = 0) throws(SchedulerError)
        where Model == OpaqueDeviceModel {
        for _ in 0..<requests {
            _ = try startRequest(lease)
            spin(nanoseconds: nanoseconds)
            try finishRequest(lease)
        }
        try finishBatch(lease, requests: requests, bytes: bytes)
    }
}

/// Requests laid out in zeroed memory as a resolved batch: each one's device-readable bytes in
/// one fragment and its device-writable buffer in another.
final class Requests {
    let memory: GuestMemoryRegion
    private var next = 0
    private(set) var fragments: [HostRange] = []
    private(set) var spans: [(readable: Range<Int>, writable: Range<Int>)] = []
    /// Where each request's writable buffer starts in `memory`.
    private(set) var writableOffsets: [Int] = []

    init(size: Int = 1 << 20) { memory = GuestMemoryRegion(size: size) }

    /// Adds a request; returns its index. Its writable buffer is filled with `fill`.
    @discardableResult
    func add(_ readable: [UInt8], writable: Int = 0, fill: UInt8 = 0xee) -> Int {
        let first = fragments.count
        if !readable.isEmpty { fragments.append(place(readable)) }
        let middle = fragments.count
        writableOffsets.append(next)
        if writable > 0 { fragments.append(place([UInt8](repeating: fill, count: writable))) }
        spans.append((first..<middle, middle..<fragments.count))
        return spans.count - 1
    }

    private func place(_ bytes: [UInt8]) -> HostRange {
        let offset = next
        next += (bytes.count + 63) & ~63
        precondition(next <= memory.size, "test requests exceed their memory")
        memory.write(bytes, at: UInt64(offset))
        return memory.range.slice(offset: offset, length: bytes.count)
    }

    var batch: RequestBatch { .testing(fragments: fragments, requests: spans) }

    /// What a model sees of request `i` from `queue`.
    func modelRequest(_ i: Int, queue: Int = 0) -> ModelRequest {
        let batch = batch
        return ModelRequest(queue: queue, reader: batch.reader(i), writableBytes: batch.byteCounts(i).writable)
    }

    /// Request `i`'s writable buffer as it is now.
    func writable(_ i: Int) -> [UInt8] {
        let count = fragments[spans[i].writable].reduce(0) { $0 + $1.count }
        return memory.read(at: UInt64(writableOffsets[i]), count: count)
    }
}

/// Starts the single request `readable` (+ `writable` bytes) on `model` and returns the verdict.
func verdict<M: DeviceModel>(_ model: inout M, _ readable: [UInt8], writable: Int = 0, queue: Int = 0) -> ModelVerdict {
    let requests = Requests(size: max(1 << 16, readable.count + writable + 256))
    requests.add(readable, writable: writable)
    return withExtendedLifetime(requests) {
        var request = requests.modelRequest(0, queue: queue)
        return model.start(&request)
    }
}

/// A virtio-blk request: header, then `payload` bytes of data.
func blockRequest(_ type: BlockRequestType, sector: UInt64, payload: Int = 0) -> [UInt8] {
    BlockRequestHeader(type: type, sector: sector).bytes + [UInt8](repeating: 0x5a, count: payload)
}

/// A DISCARD or WRITE_ZEROES request over `ranges`.
func rangeRequest(_ type: BlockRequestType, _ ranges: [BlockRangeSegment]) -> [UInt8] {
    BlockRequestHeader(type: type, sector: 0).bytes + ranges.flatMap(\.bytes)
}

/// A transmitted frame as a virtio-net driver queues it: the 12-byte header, destination,
/// source, EtherType, then `payload` bytes.
func transmitFrame(source: EthernetAddress, payload: Int) -> [UInt8] {
    [UInt8](repeating: 0, count: NetworkHeader.byteCount) + EthernetAddress.broadcast.array + source.array + [0x08, 0x00]
        + [UInt8](repeating: 0x42, count: payload)
}

/// A block device stand-in that records the requests it is handed and answers each OK.
final class RecordingBlockDevice: VirtioDevice {
    private let seen = Locked<[UInt64]>([])
    private let calls = Atomic<Int>(0)

    var deviceID: UInt32 { 2 }
    var deviceFeatures: VirtioFeatures { [] }
    var queueCount: Int { 1 }
    var maxQueueSize: Int { 256 }
    func readConfig() -> [UInt8] { [] }
    func reset() {}

    /// The sectors of the requests processed, in order.
    var sectors: [UInt64] { seen.withLock { $0 } }
    /// The calls of ``process(queue:batch:)``.
    var processCalls: Int { calls.load(ordering: .relaxed) }

    func process(queue: Int, batch: inout RequestBatch) {
        calls.add(1, ordering: .relaxed)
        for i in 0..<batch.count {
            var reader = batch.reader(i)
            let sector = BlockRequestHeader.read(from: &reader)?.sector ?? .max
            seen.withLock { $0.append(sector) }
            var writer = batch.writer(i)
            guard writer.capacity >= 1 else {
                batch.complete(i, usedLength: 0)
                continue
            }
            writer.writeZeros(writer.remaining - 1)
            _ = try? writer.write(BlockStatus.ok.rawValue)
            batch.complete(i, with: writer)
        }
    }
}
