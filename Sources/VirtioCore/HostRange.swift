/// A bounded range of host bytes that a translator resolved a device-visible address to.
///
/// This is one of the few types that holds a raw pointer. It is produced only by a
/// ``MemoryTranslator`` (which checked that the range lies inside memory the device may
/// reach), and the bytes are reached only through scoped, bounds-checked accessors.
/// The memory behind it is shared with an untrusted peer: it may change at any moment, so
/// copy what you need once and decide on the copy.
@frozen
public struct HostRange {
    /// `package`: the grant table's atomic view (VirtioGrants) forms its entry pointers from
    /// it in place, so that no pointer is taken out of a scoped accessor.
    @usableFromInline
    package let base: UnsafeMutableRawPointer
    /// The number of bytes in the range.
    public let count: Int

    /// A range over `count` bytes at `base`.
    ///
    /// Only translators create ranges; the caller vouches that the bytes stay mapped for as
    /// long as the range is used.
    @inlinable
    public init(unsafeBase base: UnsafeMutableRawPointer, count: Int) {
        precondition(count >= 0)
        self.base = base
        self.count = count
    }

    /// A range over `count` bytes at host address `address` (a translator's table entry holds
    /// addresses as integers); the pointer is formed here and nowhere else.
    ///
    /// The caller vouches, as for ``init(unsafeBase:count:)``, that the bytes are mapped.
    @inlinable
    public init(unsafeAddress address: UInt, count: Int) {
        guard let base = UnsafeMutableRawPointer(bitPattern: address) else { preconditionFailure("a host range at address 0") }
        self.init(unsafeBase: base, count: count)
    }

    /// The sub-range `[offset, offset + length)`.
    @inlinable
    public func slice(offset: Int, length: Int) -> HostRange {
        precondition(offset >= 0 && length >= 0 && offset <= count && length <= count &- offset, "slice out of bounds")
        return HostRange(unsafeBase: base + offset, count: length)
    }

    /// The host address as a number, for diagnostics and checksums (never dereferenced).
    @inlinable
    public var startAddress: UInt { UInt(bitPattern: base) }

    /// Whether the host address is a multiple of `alignment` (a power of 2).
    @inlinable
    public func isAligned(to alignment: Int) -> Bool { Int(bitPattern: base) & (alignment &- 1) == 0 }

    /// Copies `min(count - offset, destination.count)` bytes starting at `offset` into
    /// `destination` and returns how many were copied.
    @inlinable
    public func copyBytes(from offset: Int = 0, into destination: UnsafeMutableRawBufferPointer) -> Int {
        precondition(offset >= 0 && offset <= count)
        let n = Swift.min(count &- offset, destination.count)
        if n > 0 { destination.baseAddress!.copyMemory(from: base + offset, byteCount: n) }
        return n
    }

    /// Copies `min(count - offset, source.count)` bytes from `source` into the range starting
    /// at `offset` and returns how many were copied.
    @inlinable
    public func copyBytes(to offset: Int = 0, from source: UnsafeRawBufferPointer) -> Int {
        precondition(offset >= 0 && offset <= count)
        let n = Swift.min(count &- offset, source.count)
        if n > 0 { (base + offset).copyMemory(from: source.baseAddress!, byteCount: n) }
        return n
    }

    /// Fills the range with `byte`.
    @inlinable
    public func fill(with byte: UInt8) {
        if count > 0 { base.initializeMemory(as: UInt8.self, repeating: byte, count: count) }
    }

    /// Calls `body` with the range's bytes. The pointer must not escape `body`.
    @inlinable
    public func withUnsafeBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        try body(UnsafeRawBufferPointer(start: base, count: count))
    }

    /// Calls `body` with the range's bytes, writable. The pointer must not escape `body`.
    @inlinable
    public func withUnsafeMutableBytes<R, E: Error>(_ body: (UnsafeMutableRawBufferPointer) throws(E) -> R) throws(E) -> R {
        try body(UnsafeMutableRawBufferPointer(start: base, count: count))
    }
}

extension HostRange {
    /// Calls `body` with the bytes of each of `ranges`, in order (a vectored system call's
    /// list). The pointers exist only during the call and must not escape `body`.
    @inlinable
    public static func withUnsafeBytes<R, E: Error>(of ranges: [HostRange], _ body: ([UnsafeRawBufferPointer]) throws(E) -> R) throws(E) -> R {
        var buffers: [UnsafeRawBufferPointer] = []
        buffers.reserveCapacity(ranges.count)
        for range in ranges { buffers.append(UnsafeRawBufferPointer(start: range.base, count: range.count)) }
        return try body(buffers)
    }

    /// Calls `body` with the bytes of each of `ranges`, in order and writable (a vectored system
    /// call's list). The pointers exist only during the call and must not escape `body`.
    @inlinable
    public static func withUnsafeMutableBytes<R, E: Error>(of ranges: [HostRange], _ body: ([UnsafeMutableRawBufferPointer]) throws(E) -> R) throws(E) -> R {
        var buffers: [UnsafeMutableRawBufferPointer] = []
        buffers.reserveCapacity(ranges.count)
        for range in ranges { buffers.append(UnsafeMutableRawBufferPointer(start: range.base, count: range.count)) }
        return try body(buffers)
    }
}

extension HostRange: @unchecked Sendable {}
