import VirtioCore
import VirtioDevices
import VirtioTransport

import VirtioSystem

/// Fuzz target: the virtio-blk device (Spec/devices.md §1) on requests of any bytes and any
/// shape, against a reference model of the image.
///
/// Input: read-only or not, then requests: the request's device-readable bytes (header and
/// payload as the driver wrote them, any length), split into up to six fragments at fuzzed
/// points, and a writable capacity (0 to 8 KiB) split the same way.
///
/// Checked: the image never changes size; only an OUT or WRITE_ZEROES/DISCARD that completes
/// OK changes it, and exactly as the reference says; an IN that completes OK returns the
/// reference's bytes; the status is 0, 1 or 2 at the last writable byte and the used length
/// is the whole writable part (0 without one); no byte of guest memory outside the writable
/// fragments changes.
public enum BlockDeviceTarget {
    static let sectors = 64
    static let imageSize = sectors * 512

    /// The image of one run (made afresh, removed at its end; runs may go on in parallel, as
    /// the corpus replay tests do).
    static func imagePath() -> String { "/tmp/vg-fuzz-blk-\(UInt64.random(in: 0...UInt64.max)).img" }

    public static func run(_ data: UnsafeRawBufferPointer) {
        var input = FuzzInput(data)
        let readOnly = input.byte() & 7 == 0
        var reference = (0..<imageSize).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ ($0 >> 9)) }
        let path = imagePath()
        do { try TextFile.write(bytes: reference, to: path, mode: 0o600) } catch { fuzzCheck(false, "cannot create the image: \(error)") }
        var configuration = BlockDevice.Configuration()
        configuration.readOnly = readOnly
        configuration.maxRangeSegments = 4
        configuration.maxRangeSectors = 32
        let file: StorageFile
        do { file = try StorageFile(path: path, writable: !readOnly) } catch { fuzzCheck(false, "cannot open the image: \(error)"); return }
        let device = BlockDevice(file: file, configuration: configuration)
        let region = GuestMemoryRegion(size: 64 * 1024)
        defer { try? TextFile.remove(path) }

        while !input.isExhausted {
            let request = input.take(Int(input.integer(UInt16.self) % 1200))
            let capacity = Int(input.integer(UInt16.self) % 8193)
            let readSplits = splits(&input, total: request.count)
            let writeSplits = splits(&input, total: capacity)
            // Readable bytes at 0x0000..., writable at 0x8000...; 0x7F bytes elsewhere.
            region.range.fill(with: 0x7F)
            region.write(request, at: 0)
            var fragments: [HostRange] = []
            var at = 0
            for length in readSplits {
                fragments.append(region.range.slice(offset: at, length: length))
                at += length
            }
            let writableStart = fragments.count
            at = 0x8000
            for length in writeSplits {
                fragments.append(region.range.slice(offset: at, length: length))
                at += length
            }
            var batch = RequestBatch.testing(fragments: fragments, requests: [(0..<writableStart, writableStart..<fragments.count)])
            device.process(queue: 0, batch: &batch)
            let used = Int(batch.usedLength(0))
            let reply = region.read(at: 0x8000, count: capacity)
            fuzzCheck(region.read(at: 0x8000 + UInt64(capacity), count: 0x1000).allSatisfy { $0 == 0x7F }, "bytes written past the writable part")
            fuzzCheck(region.read(at: UInt64(request.count), count: 0x8000 - request.count).allSatisfy { $0 == 0x7F }, "bytes written into the readable part's tail")
            fuzzCheck(region.read(at: 0, count: request.count) == request, "the readable part changed")
            guard capacity > 0 else {
                fuzzCheck(used == 0, "used length without a writable byte")
                fuzzCheck(image(path) == reference, "a request with no status byte changed the image")
                continue
            }
            fuzzCheck(used == capacity, "used length \(used), writable \(capacity)")
            let status = reply[capacity - 1]
            fuzzCheck(status <= 2, "status \(status)")
            update(&reference, request: request, dataRoom: capacity - 1, status: status, reply: reply, readOnly: readOnly, configuration: configuration)
            let actual = image(path)
            fuzzCheck(actual.count == imageSize, "the image is \(actual.count) bytes")
            fuzzCheck(actual == reference, "the image differs from the reference after \(request.prefix(16))")
        }
    }

    /// Fragment lengths adding up to `total`: up to six fragments cut at fuzzed points.
    static func splits(_ input: inout FuzzInput, total: Int) -> [Int] {
        var cuts = (0..<Int(input.byte() % 6)).map { _ in total == 0 ? 0 : Int(input.integer(UInt16.self)) % (total + 1) }
        cuts.sort()
        var lengths: [Int] = []
        var last = 0
        for c in cuts + [total] {
            if c > last { lengths.append(c - last) }
            last = max(last, c)
        }
        return lengths
    }

    static func image(_ path: String) -> [UInt8] {
        (try? TextFile.bytes(path)) ?? []
    }

    /// What the request may have done to the image, given the status the device reported;
    /// checks the status against the reference's verdict where it is decidable.
    static func update(_ reference: inout [UInt8], request: [UInt8], dataRoom: Int, status: UInt8, reply: [UInt8],
                       readOnly: Bool, configuration: BlockDevice.Configuration) {
        guard request.count >= 16 else {
            fuzzCheck(status == BlockStatus.ioError.rawValue, "a short header was not IOERR")
            return
        }
        func le<T: FixedWidthInteger>(_: T.Type, _ at: Int) -> T { request[at..<at + MemoryLayout<T>.size].reversed().reduce(T.zero) { $0 << 8 | T($1) } }
        let type = le(UInt32.self, 0), sector = le(UInt64.self, 8)
        let payload = Array(request[16...])
        func inRange(_ sector: UInt64, _ bytes: Int) -> Bool {
            bytes % 512 == 0 && sector <= UInt64(sectors) && UInt64(bytes / 512) <= UInt64(sectors) - sector
        }
        switch type {
        case 0:
            let ok = inRange(sector, dataRoom)
            fuzzCheck(status == (ok ? 0 : 1), "IN status \(status), expected \(ok ? 0 : 1)")
            if ok { fuzzCheck(Array(reply[0..<dataRoom]) == Array(reference[Int(sector) * 512..<Int(sector) * 512 + dataRoom]), "IN returned other bytes") }
        case 1:
            let ok = !readOnly && inRange(sector, payload.count)
            fuzzCheck(status == (ok ? 0 : 1), "OUT status \(status), expected \(ok ? 0 : 1)")
            if ok { reference.replaceSubrange(Int(sector) * 512..<Int(sector) * 512 + payload.count, with: payload) }
        case 11, 13:
            guard status == 0 else { return }
            fuzzCheck(!readOnly && payload.count % 16 == 0 && payload.count >= 16, "a malformed range list completed OK")
            for s in stride(from: 0, to: payload.count, by: 16) {
                let start = Int(le(UInt64.self, 16 + s)), count = Int(le(UInt32.self, 16 + s + 8))
                fuzzCheck(inRange(UInt64(start), count * 512), "a range outside the capacity completed OK")
                reference.replaceSubrange(start * 512..<(start + count) * 512, with: repeatElement(0, count: count * 512))
            }
        case 4, 8:
            fuzzCheck(status == 0, "FLUSH or GET_ID failed")
        default:
            fuzzCheck(status == BlockStatus.unsupported.rawValue, "type \(type) was not UNSUPP")
        }
    }
}
