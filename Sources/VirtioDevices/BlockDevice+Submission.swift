import VirtioCore
import VirtioTransport
import VirtioSystem

/// How a kept request's I/O is prepared on the queue's ring. A ring entry's user data is the
/// request's slot (low 32 bits) and, for a range list, the range's index (high 32 bits).
extension BlockQueueEngine {
    static func userData(_ index: Int, part: Int = 0) -> UInt64 { UInt64(index) | UInt64(part) << 32 }

    /// IN: one readv over the data part of the writable buffers (the status byte stays out).
    func prepareRead(_ index: Int, _ offset: UInt64, _ count: Int, _ request: InFlightRequest) -> Bool {
        var writer = request.writer()
        var prepared = false
        writer.produceVectored(upTo: count) { parts in
            // More fragments than one entry carries: served synchronously instead.
            guard parts.reduce(0, { $0 + $1.count }) == count else { return 0 }
            let buffers = directBuffers(index, parts, copyingIn: false)
            prepared = prepare { () throws(IOUringPrepareFailure) in
                try file.prepareRead(on: ring, at: offset, into: buffers, userData: Self.userData(index))
            }
            return 0
        }
        record(index, offset: offset, bytes: count, pending: prepared ? 1 : 0)
        return prepared
    }

    /// OUT: one writev from the readable buffers after the header.
    func prepareWrite(_ index: Int, _ offset: UInt64, _ count: Int, _ request: InFlightRequest) -> Bool {
        var reader = request.reader()
        reader.skip(BlockRequestHeader.byteCount)
        var prepared = false
        reader.consumeVectored(upTo: count) { parts in
            guard parts.reduce(0, { $0 + $1.count }) == count else { return 0 }
            // The guest's buffers as they are, unless O_DIRECT needs them bounced (GHT-BLK-24).
            let buffers = file.isDirect && !StorageFile.isDirectAligned(parts)
                ? directBuffers(index, parts.map { UnsafeMutableRawBufferPointer(mutating: $0) }, copyingIn: true).map { UnsafeRawBufferPointer($0) }
                : parts
            prepared = prepare { () throws(IOUringPrepareFailure) in
                try file.prepareWrite(on: ring, at: offset, from: buffers, userData: Self.userData(index))
            }
            return 0
        }
        record(index, offset: offset, bytes: count, pending: prepared ? 1 : 0)
        return prepared
    }

    /// GHT-BLK-24: `parts` as they are, or, for an O_DIRECT file when they are not aligned,
    /// slot `index`'s bounce buffer (freed with the slot).
    private func directBuffers(_ index: Int, _ parts: [UnsafeMutableRawBufferPointer], copyingIn: Bool) -> [UnsafeMutableRawBufferPointer] {
        guard file.isDirect, !StorageFile.isDirectAligned(parts) else { return parts }
        let bounce = StorageFile.makeBounceBuffer(for: parts, copyingIn: copyingIn)
        slots[index].bounce = bounce.base
        return [bounce.bytes]
    }

    /// FLUSH: fdatasync through the ring.
    func prepareFlush(_ index: Int) -> Bool {
        let prepared = prepare { () throws(IOUringPrepareFailure) in
            try file.prepareSynchronize(on: ring, userData: Self.userData(index))
        }
        slots[index].pending = prepared ? 1 : 0
        return prepared
    }

    /// DISCARD, WRITE_ZEROES: one fallocate per range (GHT-BLK-19).
    func prepareRanges(_ index: Int, _ list: [BlockRange]) -> Bool {
        var count = 0
        for (k, range) in list.enumerated() {
            let ok = prepare { () throws(IOUringPrepareFailure) in
                try file.prepareAllocation(on: ring, range.deallocate ? .punchHole : .zeroRange, at: range.offset, length: range.length,
                                           userData: Self.userData(index, part: k))
            }
            guard ok else {
                // Ranges already in the kernel complete; the request then fails as a whole.
                slots[index].failed = true
                break
            }
            count += 1
        }
        slots[index].pending = count
        return count > 0
    }

    private func record(_ index: Int, offset: UInt64, bytes: Int, pending: Int) {
        slots[index].offset = offset
        slots[index].bytes = bytes
        slots[index].produced = bytes
        slots[index].pending = pending
    }
}
