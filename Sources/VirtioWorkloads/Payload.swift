import VirtioSystem

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

    /// Whether `reply` holds exactly `expected` (memcmp: the throughput workload compares
    /// every reply, and a byte loop would cost the guest more than the transport does).
    public static func equal(_ expected: [UInt8], _ reply: Slice<UnsafeRawBufferPointer>) -> Bool {
        expected.withUnsafeBytes { $0.hasSameBytes(as: UnsafeRawBufferPointer(rebasing: reply)) }
    }

    public static func littleEndian(_ value: UInt64) -> [UInt8] { withUnsafeBytes(of: value.littleEndian) { Array($0) } }
}
