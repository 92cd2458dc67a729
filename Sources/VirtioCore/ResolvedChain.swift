/// The host bytes of one chain, every segment already translated with the access its
/// direction allows: what a device reads and writes, with no further translation.
///
/// Resolving before the device runs means a chain that names memory the device may not
/// reach (an ungranted handle, a read-only grant behind a device-writable descriptor) is
/// refused before the device acts on any of it.
public struct ChainResolver: Sendable {
    @usableFromInline var storage: [HostRange] = []

    /// The fragments of the chains resolved so far: readable ones, then writable ones, per chain.
    public var fragments: [HostRange] { storage }

    public init() {}

    /// Forgets every resolved chain (keeping the storage).
    public mutating func removeAll() { storage.removeAll(keepingCapacity: true) }

    /// Translates each segment of `chain` through `memory` and appends its host fragments.
    ///
    /// - Returns: where the chain's fragments are: readable ones in `readable`, writable ones
    ///   in `writable` (index ranges into ``fragments``).
    /// - Throws: ``VirtqueueError/memoryFault(_:)`` for the first segment that cannot be reached;
    ///   the fragments of this chain are then removed again.
    @inlinable
    public mutating func resolve<Memory: MemoryTranslator>(_ chain: DescriptorChain, through memory: Memory)
        throws(VirtqueueError) -> (readable: Range<Int>, writable: Range<Int>) {
        let first = storage.count
        var readableEnd = first
        var index = 0
        for segment in chain.segments {
            var address = segment.address
            var left = Int(segment.length)
            // GHT-CHN-02: an empty segment contributes nothing and is not translated (as in the
            // chain reader and writer), wherever its address points.
            while left > 0 {
                let range: HostRange
                do {
                    range = try memory.translate(address, length: left, access: segment.access)
                } catch {
                    storage.removeSubrange(first...)
                    throw .memoryFault(error)
                }
                if range.count > 0 { storage.append(range) }
                address &+= UInt64(range.count)
                left &-= range.count
                if range.count == 0 && left > 0 {
                    storage.removeSubrange(first...)
                    throw .memoryFault(TranslationFault(.outOfRange, address: address, length: left, access: segment.access))
                }
            }
            index &+= 1
            if index == chain.readableSegmentCount { readableEnd = storage.count }
        }
        if chain.readableSegmentCount == 0 { readableEnd = first }
        return (first..<readableEnd, readableEnd..<storage.count)
    }
}

/// A position in a run of resolved fragments, stepped over fragment by fragment: what the fragment
/// reader and writer share.
@usableFromInline
struct FragmentCursor {
    @usableFromInline let fragments: [HostRange]
    @usableFromInline var index: Int
    @usableFromInline let end: Int
    @usableFromInline var offset = 0

    init(_ fragments: [HostRange], _ range: Range<Int>) {
        self.fragments = fragments
        index = range.lowerBound
        end = range.upperBound
    }

    /// The bytes of the fragments in the range.
    var total: Int { fragments[index..<end].reduce(0) { $0 + $1.count } }

    /// The fragments of the next `count` bytes (at most `maxFragments` of them), not stepped over:
    /// what a vectored system call is given.
    func peek(upTo count: Int, maxFragments: Int) -> [HostRange] {
        var lookahead = self
        var parts: [HostRange] = []
        _ = lookahead.advance(upTo: count) { part, _ in
            guard parts.count < maxFragments else { return 0 }
            parts.append(part)
            return part.count
        }
        return parts
    }

    /// Steps over up to `count` bytes: `body` gets each fragment (the rest of the current fragment,
    /// at most what is still wanted) and the bytes done before it, and returns how many of the
    /// fragment it used; a fragment used in part ends the walk. Returns the bytes stepped over.
    mutating func advance(upTo count: Int, _ body: (_ part: HostRange, _ done: Int) -> Int) -> Int {
        var done = 0
        while done < count && index < end {
            let fragment = fragments[index]
            let part = fragment.slice(offset: offset, length: min(fragment.count - offset, count - done))
            let n = body(part, done)
            done += n
            offset += n
            if offset == fragment.count {
                index += 1
                offset = 0
            } else if n < part.count {
                break
            }
        }
        return done
    }
}

/// Reads the device-readable bytes of a resolved chain, across fragments at any split.
public struct FragmentReader {
    @usableFromInline var cursor: FragmentCursor
    /// The total readable bytes.
    public let length: Int
    /// The bytes consumed so far.
    public private(set) var bytesRead = 0

    public init(_ fragments: [HostRange], _ range: Range<Int>) {
        cursor = FragmentCursor(fragments, range)
        length = cursor.total
    }

    /// The readable bytes not yet consumed.
    public var remaining: Int { length - bytesRead }

    /// Copies up to `buffer.count` bytes into `buffer`; returns how many.
    public mutating func read(into buffer: UnsafeMutableRawBufferPointer) -> Int {
        let n = cursor.advance(upTo: buffer.count) { part, done in
            part.copyBytes(into: UnsafeMutableRawBufferPointer(rebasing: buffer[done...]))
        }
        bytesRead += n
        return n
    }

    /// Reads exactly `count` bytes, or throws without consuming when fewer remain.
    public mutating func readBytes(_ count: Int) throws(ChainAccessError) -> [UInt8] {
        guard count <= remaining else { throw .endOfChain(needed: count, available: remaining) }
        // No zero-capacity initializer: it writes the count into the shared empty-array storage.
        guard count > 0 else { return [] }
        return [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            initialized = read(into: UnsafeMutableRawBufferPointer(buffer))
        }
    }

    /// Reads a little-endian integer, or throws without consuming when it does not fit.
    public mutating func read<T: FixedWidthInteger>(_: T.Type = T.self) throws(ChainAccessError) -> T {
        guard MemoryLayout<T>.size <= remaining else { throw .endOfChain(needed: MemoryLayout<T>.size, available: remaining) }
        var value = T.zero
        _ = withUnsafeMutableBytes(of: &value) { read(into: $0) }
        return T(littleEndian: value)
    }

    /// Hands up to `count` readable bytes to `body` fragment by fragment, each fragment one contiguous
    /// host range valid only during the call; `body` returns how many bytes of it it used, and
    /// a fragment used in part ends the walk. For devices that move payload with a system call
    /// (a block device's `pwrite`) instead of a copy. Returns the bytes consumed.
    @discardableResult
    public mutating func consume(upTo count: Int, _ body: (UnsafeRawBufferPointer) -> Int) -> Int {
        let n = cursor.advance(upTo: count) { part, _ in part.withUnsafeBytes { body($0) } }
        bytesRead += n
        return n
    }

    /// Hands up to `count` readable bytes to `body` as one list of at most `maxFragments` fragments
    /// (contiguous host ranges, valid only during the call), for a vectored system call
    /// (`pwritev`); `body` returns how many bytes it used, from the start, and the reader
    /// advances by that. Returns the bytes consumed.
    @discardableResult
    public mutating func consumeVectored(upTo count: Int, maxFragments: Int = 1024, _ body: ([UnsafeRawBufferPointer]) -> Int) -> Int {
        let parts = cursor.peek(upTo: count, maxFragments: maxFragments)
        // The pointers live only inside the scoped accessor: none is made outside a closure.
        return skip(HostRange.withUnsafeBytes(of: parts, body))
    }

    /// Skips up to `count` bytes; returns how many.
    @discardableResult
    public mutating func skip(_ count: Int) -> Int {
        let n = cursor.advance(upTo: count) { part, _ in part.count }
        bytesRead += n
        return n
    }
}

/// Writes the device-writable bytes of a resolved chain, across fragments at any split, and
/// counts them for the used length (USD-DEV-02).
public struct FragmentWriter {
    @usableFromInline var cursor: FragmentCursor
    /// The total writable bytes.
    public let capacity: Int
    /// The bytes written so far: the used length to report.
    public private(set) var bytesWritten = 0

    public init(_ fragments: [HostRange], _ range: Range<Int>) {
        cursor = FragmentCursor(fragments, range)
        capacity = cursor.total
    }

    /// The writable bytes not yet written.
    public var remaining: Int { capacity - bytesWritten }

    /// The used length to report (the used ring's 32-bit field).
    public var usedLength: UInt32 { UInt32(clamping: bytesWritten) }

    /// Copies up to `bytes.count` bytes; returns how many.
    @discardableResult
    public mutating func write(_ bytes: UnsafeRawBufferPointer) -> Int {
        let n = cursor.advance(upTo: bytes.count) { part, done in
            part.copyBytes(from: UnsafeRawBufferPointer(rebasing: bytes[done...]))
        }
        bytesWritten += n
        return n
    }

    /// Moves up to `count` bytes from `reader` into this chain, fragment to fragment with no
    /// intermediate buffer (a device that forwards payload: echo, loopback); returns how many.
    @discardableResult
    public mutating func transfer(from reader: inout FragmentReader, count: Int = .max) -> Int {
        let n = cursor.advance(upTo: min(count, reader.remaining)) { part, _ in
            part.withUnsafeMutableBytes { reader.read(into: $0) }
        }
        bytesWritten += n
        return n
    }

    /// Offers up to `count` writable bytes to `body` fragment by fragment, each fragment one contiguous
    /// host range valid only during the call; `body` returns how many bytes it filled, and a
    /// fragment filled in part ends the walk. For devices that fill buffers with a system call (a
    /// block device's `pread`). Returns the bytes produced, which count as written.
    @discardableResult
    public mutating func produce(upTo count: Int, _ body: (UnsafeMutableRawBufferPointer) -> Int) -> Int {
        let n = cursor.advance(upTo: count) { part, _ in part.withUnsafeMutableBytes { body($0) } }
        bytesWritten += n
        return n
    }

    /// Offers up to `count` writable bytes to `body` as one list of at most `maxFragments` fragments
    /// (valid only during the call), for a vectored system call (`preadv`); `body` returns how
    /// many bytes it filled, from the start, and they count as written. Returns that.
    @discardableResult
    public mutating func produceVectored(upTo count: Int, maxFragments: Int = 1024, _ body: ([UnsafeMutableRawBufferPointer]) -> Int) -> Int {
        let parts = cursor.peek(upTo: count, maxFragments: maxFragments)
        let n = cursor.advance(upTo: HostRange.withUnsafeMutableBytes(of: parts, body)) { part, _ in part.count }
        bytesWritten += n
        return n
    }

    /// Writes `count` zero bytes (or as many as fit); returns how many.
    @discardableResult
    public mutating func writeZeros(_ count: Int) -> Int {
        produce(upTo: count) { part in
            part.initializeMemory(as: UInt8.self, repeating: 0)
            return part.count
        }
    }

    /// Writes all of `bytes`, or throws without writing when they do not fit.
    public mutating func write(contentsOf bytes: some Collection<UInt8>) throws(ChainAccessError) {
        guard bytes.count <= remaining else { throw .endOfChain(needed: bytes.count, available: remaining) }
        _ = Array(bytes).withUnsafeBytes { write($0) }
    }

    /// Writes a little-endian integer, or throws without writing when it does not fit.
    public mutating func write<T: FixedWidthInteger>(_ value: T) throws(ChainAccessError) {
        guard MemoryLayout<T>.size <= remaining else { throw .endOfChain(needed: MemoryLayout<T>.size, available: remaining) }
        _ = withUnsafeBytes(of: value.littleEndian) { write($0) }
    }
}
