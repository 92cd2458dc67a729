import Testing
import VirtioCore
import VirtioDevices
import VirtioTransport

#if canImport(Glibc)
import Glibc
#endif
import VirtioSystem

/// `limits.md` §4: what one request may make a device allocate. Each test hands a device a chain
/// whose fragments all name the same 1 MiB buffer (a chain may repeat a buffer as often as it
/// has descriptors), and measures how far the process's peak resident set grew meanwhile: a
/// copy of the request would add 64 MiB or more; tests running alongside add a few MiB.
@Suite("Per-request device allocation", .serialized)
struct DeviceAllocationTests {
    static let mebibyte = 1 << 20
    static let repeats = 64

    /// The bytes by which the peak resident set (VmHWM, reset first) grew while `body` ran.
    static func peakGrowth(_ body: () throws -> Void) throws -> Int {
        func kilobytes(_ field: String) throws -> Int {
            let line = try TextFile.read("/proc/self/status").split(separator: "\n").first { $0.hasPrefix(field + ":") }
            return Int(line?.split(separator: " ").dropFirst().first ?? "") ?? 0
        }
        try TextFile.write("5", to: "/proc/self/clear_refs")
        let before = try kilobytes("VmRSS")
        try body()
        return max(0, try kilobytes("VmHWM") - before) * 1024
    }

    /// `repeats` fragments over one touched 1 MiB buffer of `region`, then `tail`.
    static func aliasing(_ region: GuestMemoryRegion, then tail: [HostRange]) -> [HostRange] {
        let buffer = region.range.slice(offset: 0, length: mebibyte)
        return Array(repeating: buffer, count: repeats) + tail
    }

    @Test("GHT-LIM-60: the checksum device streams a request through one fixed chunk: 64 MiB of readable fragments over one buffer cost no allocation of their size")
    func checksumStreams() throws {
        let device = ChecksumEchoDevice()
        let region = GuestMemoryRegion(size: 2 * Self.mebibyte)
        region.write(Array(repeating: 0x5A, count: Self.mebibyte), at: 0)
        let reply = region.range.slice(offset: Self.mebibyte, length: 64)
        var batch = RequestBatch.testing(fragments: Self.aliasing(region, then: [reply]), requests: [(0..<Self.repeats, Self.repeats..<Self.repeats + 1)])
        let growth = try Self.peakGrowth { device.process(queue: 0, batch: &batch) }
        // A whole-request copy costs at least 64 MiB (192 MiB measured before GHT-LIM-60); tests
        // running beside this one (and a sanitizer) move the process peak too: 57 MiB seen under ASan.
        #expect(growth < 112 << 20, "processing grew the peak resident set by \(growth >> 20) MiB")
        #expect(batch.usedLength(0) == 64)
        #expect(region.read(at: UInt64(Self.mebibyte) + 8, count: 56) == Array(repeating: 0x5A, count: 56))
    }

    @Test("GHT-LIM-60: streamed in chunks, the reply is the checksum of every readable byte and the bytes echoed, across fragments and chunk boundaries")
    func checksumAcrossChunks() throws {
        let device = ChecksumEchoDevice()
        let region = GuestMemoryRegion(size: 1 << 16)
        let payload = (0..<(2 * ChecksumEchoDevice.chunkSize + 1234)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        region.write(payload, at: 0)
        // Readable: 3000 + the rest; writable: 5 + 6000 bytes (the checksum itself split), less than the reply.
        let fragments = [region.range.slice(offset: 0, length: 3000), region.range.slice(offset: 3000, length: payload.count - 3000),
                         region.range.slice(offset: 0x8000, length: 5), region.range.slice(offset: 0x9000, length: 6000)]
        var batch = RequestBatch.testing(fragments: fragments, requests: [(0..<2, 2..<4)])
        device.process(queue: 0, batch: &batch)
        #expect(batch.usedLength(0) == 6005)
        let reply = region.read(at: 0x8000, count: 5) + region.read(at: 0x9000, count: 6000)
        let sum = reply.prefix(8).reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        #expect(sum == ChecksumEchoDevice.checksum(payload))
        #expect(Array(reply.dropFirst(8)) == Array(payload.prefix(5997)))
    }

    @Test("GHT-LIM-61: the block device reads 64 MiB into writable fragments over one buffer with no allocation of their size (vectored I/O, at most 1024 pieces a call)")
    func blockReadBounded() throws {
        let path = "/tmp/vg-lim61-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).img"
        let fd = open(path, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0o600)
        try #require(fd >= 0)
        defer { unlink(path) }
        try #require(ftruncate(fd, off_t(Self.repeats * Self.mebibyte)) == 0)   // sparse: reads as zeros
        close(fd)
        let device = BlockDevice(file: try StorageFile(path: path, writable: false))
        let region = GuestMemoryRegion(size: 2 * Self.mebibyte)
        region.write(BlockRequestHeader(type: .read, sector: 0).bytes, at: UInt64(Self.mebibyte))
        let header = region.range.slice(offset: Self.mebibyte, length: BlockRequestHeader.byteCount)
        let status = region.range.slice(offset: Self.mebibyte + 64, length: 1)
        let fragments = [header] + Self.aliasing(region, then: [status])
        var batch = RequestBatch.testing(fragments: fragments, requests: [(0..<1, 1..<fragments.count)])
        let growth = try Self.peakGrowth { device.process(queue: 0, batch: &batch) }
        // A whole-request copy costs at least 64 MiB (192 MiB measured before GHT-LIM-60); tests
        // running beside this one (and a sanitizer) move the process peak too: 57 MiB seen under ASan.
        #expect(growth < 112 << 20, "processing grew the peak resident set by \(growth >> 20) MiB")
        #expect(region.read(at: UInt64(Self.mebibyte) + 64, count: 1) == [BlockStatus.ok.rawValue])
        #expect(device.statistics.bytesRead == UInt64(Self.repeats * Self.mebibyte))
    }

    @Test("GHT-LIM-62: the network device copies a transmitted frame only up to the largest frame; a 64 MiB chain is dropped as malformed without a copy")
    func networkTransmitBounded() throws {
        let device = NetworkDevice(switch: NetworkSwitch())
        let region = GuestMemoryRegion(size: Self.mebibyte)
        var batch = RequestBatch.testing(fragments: Self.aliasing(region, then: []), requests: [(0..<Self.repeats, Self.repeats..<Self.repeats)])
        let growth = try Self.peakGrowth { device.process(queue: NetworkDevice.transmitQueue, batch: &batch) }
        // A whole-request copy costs at least 64 MiB (192 MiB measured before GHT-LIM-60); tests
        // running beside this one (and a sanitizer) move the process peak too: 57 MiB seen under ASan.
        #expect(growth < 112 << 20, "processing grew the peak resident set by \(growth >> 20) MiB")
        #expect(device.statistics.malformed == 1)
        #expect(device.statistics.framesSent == 0)
    }
}
