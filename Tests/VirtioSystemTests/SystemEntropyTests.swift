import Testing
import VirtioSystem

extension SystemTests {
    @Suite("Random bytes from the kernel")
    struct EntropyTests {
        @Test("GHT-OS-21: Entropy.fill fills the whole buffer (beyond getrandom's 256-byte atomic size) with fresh bytes; an empty buffer is no call")
        func fill() throws {
            var first = [UInt8](repeating: 0, count: 100_000), second = first
            try first.withUnsafeMutableBytes { try Entropy.fill($0) }
            try second.withUnsafeMutableBytes { try Entropy.fill($0) }
            #expect(first != second)
            // Uniform bytes: about 390 of each value, and no long zero tail left unfilled.
            #expect(Set(first).count == 256)
            #expect(first.suffix(64) != [UInt8](repeating: 0, count: 64))
            try Entropy.fill(UnsafeMutableRawBufferPointer(start: nil, count: 0))
        }
    }
}
