#if canImport(Glibc)
import Glibc
#endif
import Testing
import VirtioCore
import VirtioSystem

extension SystemTests {
    @Suite("Shared memory")
    struct SharedMemoryTests {
        let page = SharedMemory.pageSize

        @Test("GHT-OS-05: created memory is a zeroed memfd whose size is sealed against shrinking and growing")
        func sealedAgainstResize() throws {
            let memory = try SharedMemory.create(name: uniqueName("seal"), size: 3 * page)
            #expect(memory.size == 3 * page && memory.range.count == 3 * page && memory.offset == 0)
            var zeroes = [UInt8](repeating: 0xFF, count: 3 * page)
            _ = zeroes.withUnsafeMutableBytes { memory.range.copyBytes(into: $0) }
            #expect(zeroes.allSatisfy { $0 == 0 })

            let raw = memory.fd.rawValue
            #expect(ftruncate(raw, off_t(page)) == -1 && errno == EPERM, "F_SEAL_SHRINK")
            #expect(ftruncate(raw, off_t(8 * page)) == -1 && errno == EPERM, "F_SEAL_GROW")
            var info = stat()
            #expect(fstat(raw, &info) == 0 && Int(info.st_size) == 3 * page)
            // The seals are visible to a receiver that insists on them.
            let view = try SharedMemory.map(fd: try memory.fd.duplicate(), size: page, requiringSealedSize: true)
            #expect(view.size == page)
        }

        @Test("GHT-OS-06: each bad window of a received descriptor is refused with its own error, before mmap")
        func mapChecks() throws {
            let memory = try SharedMemory.create(name: uniqueName("checks"), size: 3 * page)
            let fd = try memory.fd.duplicate()
            let alignedMax = Int.max - Int.max % page

            func refusal(size: Int, offset: Int) -> SharedMemoryError? {
                do {
                    _ = try SharedMemory.map(fd: fd, size: size, offset: offset)
                    return nil
                } catch {
                    return error
                }
            }
            #expect(refusal(size: 0, offset: 0) == .invalidSize(0))
            #expect(refusal(size: -page, offset: 0) == .invalidSize(-page))
            #expect(refusal(size: page, offset: 100) == .invalidOffset(100, pageSize: page))
            #expect(refusal(size: page, offset: -page) == .invalidOffset(-page, pageSize: page))
            #expect(refusal(size: page, offset: alignedMax) == .rangeOverflow(offset: alignedMax, size: page))
            #expect(refusal(size: 2 * page, offset: 2 * page) == .outOfBounds(offset: 2 * page, size: 2 * page, fileSize: 3 * page))
            #expect(refusal(size: 3 * page + 1, offset: 0) == .outOfBounds(offset: 0, size: 3 * page + 1, fileSize: 3 * page))
            #expect(fd.isOpen, "a refused mapping leaves the caller's descriptor open")

            let closed = try memory.fd.duplicate()
            closed.close()
            #expect(throws: SharedMemoryError.system(SystemError(errno: EBADF, operation: "fstat"))) {
                _ = try SharedMemory.map(fd: closed, size: page)
            }
        }

        @Test("GHT-OS-06, GHT-OS-09: only the requested window is mapped, and writes through either mapping show in the other")
        func windowAndVisibility() throws {
            let memory = try SharedMemory.create(name: uniqueName("window"), size: 3 * page)
            let window = try SharedMemory.map(fd: try memory.fd.duplicate(), size: page + 10, offset: page)
            #expect(window.range.count == page + 10 && window.offset == page)

            // /proc/self/maps: the new mapping starts at range.startAddress, covers the 2 pages
            // that hold page + 10 bytes, and starts at file offset `page`.
            let start = String(window.range.startAddress, radix: 16)
            let line = try #require(mappingLines(containing: "memfd:").first { $0.hasPrefix(start + "-") || $0.hasPrefix("0" + start + "-") })
            let fields = line.split(separator: " ")
            let bounds = fields[0].split(separator: "-").compactMap { UInt(String($0), radix: 16) }
            #expect(bounds.count == 2 && bounds[1] - bounds[0] == UInt(2 * page))
            #expect(UInt(String(fields[2]), radix: 16) == UInt(page))
            #expect(fields[1].hasPrefix("rw") && fields[1].hasSuffix("s"), "read-write, MAP_SHARED")

            let message: [UInt8] = Array("written through the window".utf8)
            _ = message.withUnsafeBytes { window.range.copyBytes(to: 5, from: $0) }
            var seen = [UInt8](repeating: 0, count: message.count)
            _ = seen.withUnsafeMutableBytes { memory.range.copyBytes(from: page + 5, into: $0) }
            #expect(seen == message)

            memory.range.slice(offset: page, length: 1).fill(with: 0xA5)
            #expect(window.range.withUnsafeBytes { $0[0] } == 0xA5)
        }

        @Test("GHT-OS-07: a receiver that requires sealed memory refuses a file whose size can change")
        func unsealedRefused() throws {
            let path = "/tmp/\(uniqueName("plain")).bin"
            let raw = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
            try #require(raw >= 0)
            unlink(path)
            let fd = FileDescriptor(adopting: raw)
            #expect(ftruncate(raw, off_t(2 * page)) == 0)
            #expect(throws: SharedMemoryError.notSealed) {
                _ = try SharedMemory.map(fd: fd, size: page, requiringSealedSize: true)
            }
            let trusted = try SharedMemory.map(fd: fd, size: 2 * page)
            #expect(trusted.range.count == 2 * page && !pathExists(path))
        }

        @Test("GHT-OS-08, GHT-OS-04: unmap and deinit release the mapping and the descriptor exactly once")
        func releasedOnce() throws {
            let name = uniqueName("once")
            let memory = try SharedMemory.create(name: name, size: page)
            #expect(memfdDescriptorCount(named: name) == 1 && mappingLines(containing: name).count == 1)
            memory.unmap()
            #expect(!memory.isMapped && !memory.fd.isOpen)
            #expect(memfdDescriptorCount(named: name) == 0 && mappingLines(containing: name).isEmpty)
            memory.unmap()
            memory.fd.close()
            #expect(!memory.isMapped)

            let other = uniqueName("deinit")
            do {
                let region = try SharedMemory.create(name: other, size: 2 * page)
                let view = try SharedMemory.map(fd: try region.fd.duplicate(), size: page)
                #expect(memfdDescriptorCount(named: other) == 2 && mappingLines(containing: other).count == 2)
                #expect(view.isMapped)
            }
            #expect(memfdDescriptorCount(named: other) == 0 && mappingLines(containing: other).isEmpty)
        }

        @Test("GHT-OS-08: using a region's range after unmap() traps")
        func rangeAfterUnmapTraps() async {
            await #expect(processExitsWith: .failure) {
                let memory = try SharedMemory.create(name: "trap", size: SharedMemory.pageSize)
                memory.unmap()
                _ = memory.range
            }
        }

        @Test("GHT-OS-05: a region of size 0 or less is refused")
        func createRefusesEmpty() {
            #expect(throws: SharedMemoryError.invalidSize(0)) { _ = try SharedMemory.create(name: "empty", size: 0) }
            #expect(throws: SharedMemoryError.invalidSize(-1)) { _ = try SharedMemory.create(name: "negative", size: -1) }
        }
    }
}
