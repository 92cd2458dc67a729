import VirtioCore

/// One request of a batch as a layer that decides about it sees it (a device model, a
/// scheduler): its byte counts, and its first readable bytes copied ONCE out of shared memory
/// into private memory (GHT-ONE-01, DESIGN §3 "a decision and the action it guards read the
/// same private copy").
///
/// The shared bytes are reached only through ``stage(upTo:)``, which copies each byte at most
/// once; ``RequestBatch/commit(_:)`` then makes that copy the start of what the device reads.
/// A front-end that rewrites the header after the decision changes nothing the device sees.
public struct StagedRequest {
    /// Bytes kept inline before the copy spills to the heap: a virtio-blk header (16) or a
    /// virtio-net header and the Ethernet addresses (24) cost no allocation.
    static let inlineCapacity = 32

    /// The request's index in its batch.
    public let index: Int
    /// The device-readable and device-writable byte counts (from the resolved descriptors,
    /// already private).
    public let readableBytes: Int
    public let writableBytes: Int
    /// The shared bytes not copied yet: private to this type, so no decision reads them.
    private var source: FragmentReader
    /// The private copy: its first ``inlineCapacity`` bytes, then the rest.
    private var head: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
    private var tail: [UInt8] = []
    /// The bytes copied so far, from the first readable byte.
    public private(set) var stagedCount = 0

    init(index: Int, source: FragmentReader, writableBytes: Int) {
        self.index = index
        self.source = source
        readableBytes = source.remaining
        self.writableBytes = writableBytes
    }

    /// A request over `reader` alone, outside any batch (benchmarks, model tests).
    public static func detached(_ reader: FragmentReader, writableBytes: Int) -> StagedRequest {
        StagedRequest(index: 0, source: reader, writableBytes: writableBytes)
    }

    /// Copies the readable bytes up to `count` from the start (or up to the end, if fewer)
    /// into the private copy — those not copied yet, once — and returns a reader over the
    /// whole copy from its first byte.
    public mutating func stage(upTo count: Int) -> StagedReader {
        let target = min(count, readableBytes)
        if stagedCount < min(target, Self.inlineCapacity) {
            let end = min(target, Self.inlineCapacity)
            let from = stagedCount
            stagedCount += withUnsafeMutableBytes(of: &head) { source.read(into: UnsafeMutableRawBufferPointer(rebasing: $0[from..<end])) }
        }
        if stagedCount >= Self.inlineCapacity, stagedCount < target, let more = try? source.readBytes(target - stagedCount) {
            tail += more
            stagedCount += more.count
        }
        return StagedReader(head: head, tail: tail[...], count: stagedCount)
    }

    /// Copies the private copy to `destination` (at least ``stagedCount`` bytes).
    func copy(to destination: UnsafeMutableRawPointer) {
        withUnsafeBytes(of: head) { destination.copyMemory(from: $0.baseAddress!, byteCount: min(stagedCount, Self.inlineCapacity)) }
        if !tail.isEmpty { tail.withUnsafeBytes { (destination + Self.inlineCapacity).copyMemory(from: $0.baseAddress!, byteCount: $0.count) } }
    }

    /// The private copy as bytes (tests, diagnostics).
    public var copiedBytes: [UInt8] {
        [UInt8](unsafeUninitializedCapacity: stagedCount) { buffer, initialized in
            if stagedCount > 0 { copy(to: UnsafeMutableRawPointer(buffer.baseAddress!)) }
            initialized = stagedCount
        }
    }
}

/// Reads a private copy (``StagedRequest``) as ``FragmentReader`` reads shared bytes.
public struct StagedReader: LittleEndianReading {
    private let head: (UInt64, UInt64, UInt64, UInt64)
    private let tail: ArraySlice<UInt8>
    private let count: Int
    private var offset = 0

    init(head: (UInt64, UInt64, UInt64, UInt64), tail: ArraySlice<UInt8>, count: Int) {
        self.head = head
        self.tail = tail
        self.count = count
    }

    /// The bytes not yet consumed.
    public var remaining: Int { count - offset }

    private func byte(_ i: Int) -> UInt8 {
        i < StagedRequest.inlineCapacity ? withUnsafeBytes(of: head) { $0[i] } : tail[tail.startIndex + i - StagedRequest.inlineCapacity]
    }

    /// Skips up to `count` bytes; returns how many.
    @discardableResult
    public mutating func skip(_ n: Int) -> Int {
        let k = min(max(n, 0), remaining)
        offset += k
        return k
    }

    /// Reads a little-endian integer, or throws without consuming when it does not fit.
    public mutating func read<T: FixedWidthInteger>(_: T.Type = T.self) throws(ChainAccessError) -> T {
        let size = MemoryLayout<T>.size
        guard size <= remaining else { throw .endOfChain(needed: size, available: remaining) }
        var value = T.zero
        for k in 0..<size { value |= T(byte(offset + k)) << (8 * k) }
        offset += size
        return value
    }
}

/// A reader of little-endian fields: the shared bytes of a chain (``FragmentReader``) or a
/// private copy (``StagedReader``). Wire decoders take either, so that a model and a device
/// decode the same header with the same code.
public protocol LittleEndianReading {
    mutating func read<T: FixedWidthInteger>(_: T.Type) throws(ChainAccessError) -> T
}

extension FragmentReader: LittleEndianReading {}

/// The private copies a batch's requests start with, in chunks that never move (fragments
/// point into them); freed with the last batch that uses them. One per batch, allocated at the
/// first commit.
final class PrivateCopies {
    static let chunkSize = 4096
    private var chunks: [UnsafeMutableRawBufferPointer] = []
    private var used = 0

    deinit { for c in chunks { c.deallocate() } }

    /// Room for `count` bytes that stays where it is.
    func allocate(_ count: Int) -> UnsafeMutableRawPointer {
        if chunks.isEmpty || used + count > chunks[chunks.count - 1].count {
            chunks.append(.allocate(byteCount: max(count, Self.chunkSize), alignment: 16))
            used = 0
        }
        defer { used += count }
        return chunks[chunks.count - 1].baseAddress! + used
    }
}

extension RequestBatch {
    /// Request `i` for a deciding layer: nothing copied yet (``StagedRequest/stage(upTo:)``).
    public func staging(_ i: Int) -> StagedRequest {
        StagedRequest(index: i, source: reader(i), writableBytes: byteCounts(i).writable)
    }

    /// GHT-ONE-01: request `request.index`'s readable bytes start with the private copy from
    /// now on (the device reads the bytes the decision read, whatever shared memory says),
    /// then go on in shared memory after it. Call once per request staged from this batch
    /// (``staging(_:)``), before the device runs.
    public mutating func commit(_ request: StagedRequest) {
        let n = request.stagedCount
        guard n > 0, requests.indices.contains(request.index) else { return }
        if privateCopies == nil { privateCopies = PrivateCopies() }
        let base = privateCopies!.allocate(n)
        request.copy(to: base)
        let readable = requests[request.index].readable
        let start = fragments.count
        fragments.append(HostRange(unsafeBase: base, count: n))
        var skip = n
        for k in readable {
            let fragment = fragments[k]
            if skip >= fragment.count {
                skip -= fragment.count
                continue
            }
            fragments.append(fragment.slice(offset: skip, length: fragment.count - skip))
            skip = 0
        }
        requests[request.index].readable = start..<fragments.count
    }
}
