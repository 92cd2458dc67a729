import Testing
import VirtioSystem

@Suite("Memory comparison")
struct MemoryComparisonTests {
    @Test("hasSameBytes is true only for the same length and bytes; empty buffers are equal")
    func sameBytes() {
        let a: [UInt8] = [1, 2, 3, 4, 5, 6, 7, 8, 9], b: [UInt8] = [1, 2, 3, 4, 5, 6, 7, 8, 0]
        a.withUnsafeBytes { x in
            #expect(x.hasSameBytes(as: x))
            b.withUnsafeBytes { y in
                #expect(!x.hasSameBytes(as: y))
                #expect(UnsafeRawBufferPointer(rebasing: x[..<8]).hasSameBytes(as: UnsafeRawBufferPointer(rebasing: y[..<8])))
                #expect(!x.hasSameBytes(as: UnsafeRawBufferPointer(rebasing: y[..<8])))
            }
        }
        #expect(UnsafeRawBufferPointer(start: nil, count: 0).hasSameBytes(as: UnsafeRawBufferPointer(start: nil, count: 0)))
    }
}
