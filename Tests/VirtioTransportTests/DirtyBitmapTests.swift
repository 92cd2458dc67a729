import Synchronization
import Testing
import VirtioCore
import VirtioSystem
@testable import VirtioTransport

@Suite("Dirty log bitmap: one bit per guest page, set atomically", .tags(.transport))
struct DirtyBitmapTests {
    @Test("GHT-LOG-13: marks set the bits of exactly the pages a range touches, across bytes; a range beyond the log or passing 2^64 marks nothing; two threads marking at once lose no bit")
    func bitmap() throws {
        let memory = try SharedMemory.create(name: "bitmap", size: 4096)
        let bitmap = UnsafeDirtyBitmap(base: memory.range.base, byteCount: 4)   // 32 pages
        #expect(bitmap.coveredEnd == 32 * 4096)
        #expect(bitmap.mark(4095, length: 2))             // pages 0 and 1
        #expect(bitmap.mark(6 * 4096, length: 5 * 4096))  // pages 6...10, across a byte
        #expect(bitmap.mark(20 * 4096, length: 0))        // nothing
        let marked = (0..<40).filter { bitmap.isMarked(page: UInt64($0)) }
        #expect(marked == [0, 1, 6, 7, 8, 9, 10])
        #expect(!bitmap.mark(31 * 4096, length: 4097), "page 32 is beyond the log")
        #expect(!bitmap.mark(UInt64.max - 10, length: 100))
        #expect(!bitmap.isMarked(page: 31))
        memory.range.fill(with: 0)
        let wide = UnsafeDirtyBitmap(base: memory.range.base, byteCount: 4096)
        let a = WorkerThread { for p in stride(from: 0, to: 32768, by: 2) { _ = wide.mark(UInt64(p) * 4096, length: 1) } }
        let b = WorkerThread { for p in stride(from: 1, to: 32768, by: 2) { _ = wide.mark(UInt64(p) * 4096, length: 1) } }
        a.join()
        b.join()
        #expect(memory.range.withUnsafeBytes { $0.allSatisfy { $0 == 0xFF } })
    }
}
