/// The deterministic request contents: a guest regenerates them to check every reply.
public enum Payload {
    /// `length` bytes of xorshift64 output seeded by `n`.
    public static func bytes(_ n: Int, length: Int) -> [UInt8] {
        var state = UInt64(truncatingIfNeeded: n) &* 0x9E37_79B9_7F4A_7C15 | 1
        guard length > 0 else { return [] }
        return [UInt8](unsafeUninitializedCapacity: length) { buffer, count in
            var i = 0
            while i < length {
                state ^= state << 13
                state ^= state >> 7
                state ^= state << 17
                withUnsafeBytes(of: state.littleEndian) { word in
                    for b in word.prefix(length - i) { buffer[i] = b; i += 1 }
                }
            }
            count = length
        }
    }

    /// Whether `reply` holds exactly `expected`, compared eight bytes at a time (the
    /// throughput workload compares every reply: a byte loop would cost the guest more than
    /// the transport does).
    public static func equal(_ expected: [UInt8], _ reply: Slice<UnsafeRawBufferPointer>) -> Bool {
        guard expected.count == reply.count else { return false }
        let other = UnsafeRawBufferPointer(rebasing: reply)
        return expected.withUnsafeBytes { e in
            var i = 0
            while i + 8 <= e.count {
                if e.loadUnaligned(fromByteOffset: i, as: UInt64.self) != other.loadUnaligned(fromByteOffset: i, as: UInt64.self) { return false }
                i += 8
            }
            while i < e.count {
                if e[i] != other[i] { return false }
                i += 1
            }
            return true
        }
    }

    public static func littleEndian(_ value: UInt64) -> [UInt8] { withUnsafeBytes(of: value.littleEndian) { Array($0) } }
}
