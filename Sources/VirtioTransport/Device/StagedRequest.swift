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
    /// The request's index in its batch.
    public let index: Int
    /// The device-readable and device-writable byte counts (from the resolved descriptors,
    /// already private).
    public let readableBytes: Int
    public let writableBytes: Int
    /// The shared bytes not copied yet: private to this type, so no decision reads them.
    private var source: FragmentReader
    /// The private copy, from the first readable byte.
    public private(set) var copy: [UInt8] = []

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
        let more = min(count, readableBytes) - copy.count
        if more > 0, let bytes = try? source.readBytes(more) { copy += bytes }
        return StagedReader(copy[...])
    }
}

/// Reads a private copy (``StagedRequest``) as ``FragmentReader`` reads shared bytes.
public struct StagedReader: LittleEndianReading {
    private var bytes: ArraySlice<UInt8>

    init(_ bytes: ArraySlice<UInt8>) { self.bytes = bytes }

    /// The bytes not yet consumed.
    public var remaining: Int { bytes.count }

    /// Skips up to `count` bytes; returns how many.
    @discardableResult
    public mutating func skip(_ count: Int) -> Int {
        let n = min(max(count, 0), bytes.count)
        bytes.removeFirst(n)
        return n
    }

    /// Reads a little-endian integer, or throws without consuming when it does not fit.
    public mutating func read<T: FixedWidthInteger>(_: T.Type = T.self) throws(ChainAccessError) -> T {
        let size = MemoryLayout<T>.size
        guard size <= bytes.count else { throw .endOfChain(needed: size, available: bytes.count) }
        var value = T.zero
        for (k, byte) in bytes.prefix(size).enumerated() { value |= T(byte) << (8 * k) }
        bytes.removeFirst(size)
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

/// The private copies a batch's requests start with; freed with the last batch that uses them.
final class PrivateCopy {
    let bytes: UnsafeMutableRawBufferPointer

    init(_ source: [UInt8]) {
        bytes = UnsafeMutableRawBufferPointer.allocate(byteCount: source.count, alignment: 8)
        source.withUnsafeBytes { bytes.copyMemory(from: $0) }
    }

    deinit { bytes.deallocate() }

    var range: HostRange { HostRange(unsafeBase: bytes.baseAddress!, count: bytes.count) }
}

extension RequestBatch {
    /// Request `i` for a deciding layer: nothing copied yet (``StagedRequest/stage(upTo:)``).
    public func staging(_ i: Int) -> StagedRequest {
        StagedRequest(index: i, source: reader(i), writableBytes: byteCounts(i).writable)
    }

    /// GHT-ONE-01: request `request.index`'s readable bytes start with the private copy from
    /// now on (the device reads the bytes the decision read, whatever shared memory says),
    /// then go on in shared memory after it. Call once per request, before the device runs.
    public mutating func commit(_ request: StagedRequest) {
        guard !request.copy.isEmpty, spans.indices.contains(request.index) else { return }
        let holder = PrivateCopy(request.copy)
        var skip = request.copy.count
        var replaced = [holder.range]
        for fragment in fragments[spans[request.index].readable] {
            if skip >= fragment.count {
                skip -= fragment.count
                continue
            }
            replaced.append(fragment.slice(offset: skip, length: fragment.count - skip))
            skip = 0
        }
        let start = fragments.count
        fragments += replaced
        spans[request.index].readable = start..<fragments.count
        privateCopies.append(holder)
    }
}
