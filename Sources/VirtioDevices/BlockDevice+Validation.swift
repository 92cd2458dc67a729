import VirtioCore
import VirtioTransport

/// What a virtio-blk request asks of the file once every check of Spec/devices.md §1 passed:
/// the same on the synchronous and the io_uring path, so that a request the checks refuse
/// never reaches either (GHT-BLK-16).
enum BlockOperation {
    /// A status known with no file I/O: a refused request, GET_ID, FLUSH of a read-only disk.
    case done(BlockStatus)
    /// IN: `count` bytes at byte `offset` into the data part of the writable bytes.
    case read(offset: UInt64, count: Int)
    /// OUT: the `count` readable bytes after the header, to byte `offset`.
    case write(offset: UInt64, count: Int)
    /// FLUSH: every completed write made durable.
    case flush
    /// DISCARD or WRITE_ZEROES: the whole checked list.
    case ranges([BlockRange])

    /// Whether the operation touches the file (and so may go to a ring).
    var isFileIO: Bool {
        if case .done = self { return false }
        return true
    }
}

/// One range of a DISCARD or WRITE_ZEROES request, checked.
struct BlockRange {
    var offset: UInt64
    var length: UInt64
    /// Deallocated (DISCARD, or WRITE_ZEROES with unmap) rather than zeroed in place.
    var deallocate: Bool
}

extension BlockDevice {
    /// Checks one request whose writer has room for the status and says what it asks of the
    /// file. GET_ID is answered here (it writes guest memory only).
    func plan(_ reader: inout FragmentReader, _ writer: inout FragmentWriter, _ tally: inout Statistics) -> BlockOperation {
        // GHT-BLK-01, GHT-BLK-02: the header may be split anywhere; a shorter one is an error. It
        // is read once into a private value: every decision below reads that copy.
        guard let header = BlockRequestHeader.read(from: &reader) else { return .done(.ioError) }
        let dataRoom = writer.capacity - 1
        switch header.type {
        case .read:
            guard let offset = byteRange(sector: header.sector, bytes: dataRoom) else { return .done(.ioError) }
            return .read(offset: offset, count: dataRoom)
        case .write:
            let count = reader.remaining
            // GHT-BLK-06: a read-only device writes nothing.
            guard !configuration.readOnly, let offset = byteRange(sector: header.sector, bytes: count) else { return .done(.ioError) }
            return .write(offset: offset, count: count)
        case .flush:
            tally.flushes += 1
            return configuration.readOnly ? .done(.ok) : .flush
        case .getID:
            // GHT-BLK-10: up to 20 bytes, not NUL-terminated when all 20 are used.
            var id = Array(configuration.serial.utf8.prefix(20))
            id += [UInt8](repeating: 0, count: 20 - id.count)
            _ = id.prefix(dataRoom).withUnsafeBytes { writer.write($0) }
            return .done(.ok)
        case .discard where deviceFeatures.contains(.blockDiscard),
             .writeZeroes where deviceFeatures.contains(.blockWriteZeroes):
            return checkRanges(header.type, &reader)
        case .discard, .writeZeroes:
            return .done(configuration.readOnly ? .ioError : .unsupported)
        default:
            // GHT-BLK-08: any other type, including those of features not offered.
            return .done(.unsupported)
        }
    }

    /// GHT-BLK-09: DISCARD and WRITE_ZEROES. The whole list is checked before any range is touched.
    private func checkRanges(_ type: BlockRequestType, _ reader: inout FragmentReader) -> BlockOperation {
        let count = reader.remaining / BlockRangeSegment.byteCount
        guard reader.remaining % BlockRangeSegment.byteCount == 0, count >= 1, count <= Int(configuration.maxRangeSegments) else {
            return .done(.unsupported)
        }
        var ranges: [BlockRange] = []
        for _ in 0..<count {
            guard let segment = BlockRangeSegment.read(from: &reader) else { return .done(.ioError) }
            let unmap = segment.flags & BlockRangeSegment.unmapFlag != 0
            // Unknown flags, and unmap on a discard, are unsupported (VIRTIO 1.2 §5.2.6.2).
            guard segment.flags & ~BlockRangeSegment.unmapFlag == 0, !(type == .discard && unmap) else { return .done(.unsupported) }
            let bytes = Int(segment.sectorCount) * BlockRequestHeader.sectorSize
            guard segment.sectorCount <= configuration.maxRangeSectors,
                  let offset = byteRange(sector: segment.sector, bytes: bytes) else { return .done(.ioError) }
            if bytes > 0 { ranges.append(BlockRange(offset: offset, length: UInt64(bytes), deallocate: type == .discard || unmap)) }
        }
        return ranges.isEmpty ? .done(.ok) : .ranges(ranges)
    }

    /// GHT-BLK-04, GHT-BLK-05: the byte offset of `bytes` bytes at `sector`, if they are whole
    /// sectors inside the capacity.
    private func byteRange(sector: UInt64, bytes: Int) -> UInt64? {
        guard bytes % BlockRequestHeader.sectorSize == 0 else { return nil }
        let sectors = UInt64(bytes / BlockRequestHeader.sectorSize)
        guard sector <= capacity, sectors <= capacity - sector else { return nil }
        return sector * UInt64(BlockRequestHeader.sectorSize)
    }
}
