import VirtioSystem

/// The bytes of one fuzz input, consumed from the front as operation codes and operands.
///
/// Running out is not an error: every read past the end yields zeros, so that every input,
/// however short, is a complete (if dull) run, and the targets need no length checks.
public struct FuzzInput {
    private let bytes: [UInt8]
    private var position = 0

    public init(_ bytes: [UInt8]) { self.bytes = bytes }

    public init(_ buffer: UnsafeRawBufferPointer) { bytes = Array(buffer) }

    /// Whether every byte was consumed.
    public var isExhausted: Bool { position >= bytes.count }

    /// The bytes not consumed yet.
    public var remainingCount: Int { max(0, bytes.count - position) }

    public mutating func byte() -> UInt8 {
        guard position < bytes.count else { return 0 }
        defer { position += 1 }
        return bytes[position]
    }

    /// A little-endian integer.
    public mutating func integer<T: FixedWidthInteger>(_: T.Type = T.self) -> T {
        var value = T.zero
        for i in 0..<MemoryLayout<T>.size { value |= T(truncatingIfNeeded: byte()) << (8 * i) }
        return value
    }

    public mutating func bool() -> Bool { byte() & 1 == 1 }

    /// A value in `0..<count` (0 when `count` is 0).
    public mutating func index(below count: Int) -> Int {
        guard count > 0 else { return 0 }
        return Int(integer(UInt16.self)) % count
    }

    /// Up to `count` bytes (fewer at the end).
    public mutating func take(_ count: Int) -> [UInt8] {
        let n = max(0, min(count, bytes.count - position))
        defer { position += n }
        return Array(bytes[position..<(position + n)])
    }

    /// Everything not consumed yet.
    public mutating func rest() -> [UInt8] { take(remainingCount) }
}

/// A failed invariant inside a fuzz target: stops the run so libFuzzer keeps the input.
/// (`precondition` would do the same in debug builds only when the condition is not
/// optimized on; this always traps, in every build.)
@inline(never)
public func fuzzCheck(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String,
                      file: StaticString = #fileID, line: UInt = #line) {
    if !condition() { fatalError("fuzz invariant violated: \(message())", file: file, line: line) }
}

/// Whether FUZZ_TRACE is set: the targets then print each operation, to read a finding.
public let fuzzTracing = Environment.value("FUZZ_TRACE") != nil

/// Prints `message` when tracing.
@inline(__always)
public func fuzzTrace(_ message: @autoclosure () -> String) {
    if fuzzTracing {
        StandardStream.error.writeLine(message())
    }
}
