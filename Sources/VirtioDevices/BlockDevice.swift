import Synchronization
import VirtioCore
import VirtioTransport
import VirtioSystem

/// A virtio-blk device (VIRTIO 1.2 §5.2) over a file: what `virtio-grant serve --device blk`
/// serves, and what an unmodified Linux guest drives through QEMU's vhost-user-blk-pci.
///
/// Every request is checked before the file is touched (Spec/devices.md §1): a header shorter
/// than 16 bytes, a data length that is not whole sectors, a range past the capacity, a write
/// to a read-only disk or a malformed DISCARD/WRITE_ZEROES list gets an error status and no
/// I/O; a request with no writable byte cannot be answered and completes with length 0. None
/// of these breaks the queue: they are the driver's requests, not ring corruption. Payload
/// moves between the file and guest memory with `pread`/`pwrite` on the resolved fragments.
public final class BlockDevice: VirtioDevice {
    /// What the device offers.
    public struct Configuration: Sendable {
        /// Request queues (MQ is offered when more than one).
        public var queueCount = 1
        public var maxQueueSize = 256
        /// RO: every write fails with IOERR.
        public var readOnly = false
        /// DISCARD and WRITE_ZEROES.
        public var discard = true
        public var writeZeroes = true
        /// The GET_ID string (at most 20 bytes are sent).
        public var serial = "virtio-grant-blk"
        /// `blk_size`: the block size the driver should use (a multiple of 512).
        public var blockSize: UInt32 = 512
        /// `seg_max`: data segments per request. With a queue of at least 128 entries, a
        /// 126-segment request plus header and status fits in one chain (DESC-DRV rules).
        public var segmentMax: UInt32 = 126
        /// `size_max`: bytes per segment.
        public var sizeMax: UInt32 = 1 << 20
        /// Bounds of one DISCARD or WRITE_ZEROES request.
        public var maxRangeSectors: UInt32 = 1 << 22
        public var maxRangeSegments: UInt32 = 16

        public init() {}
    }

    /// Requests served, by outcome; readable from any thread.
    public struct Statistics: Sendable, Equatable {
        public var reads: UInt64 = 0
        public var writes: UInt64 = 0
        public var flushes: UInt64 = 0
        public var bytesRead: UInt64 = 0
        public var bytesWritten: UInt64 = 0
        public var ioErrors: UInt64 = 0
        public var unsupported: UInt64 = 0
        /// Requests with no writable byte for the status: nothing could be reported.
        public var unanswerable: UInt64 = 0
    }

    public let deviceID: UInt32 = 2
    public let configuration: Configuration
    public let file: StorageFile
    /// The capacity in 512-byte sectors (the file's size, rounded down).
    public let capacity: UInt64
    public let deviceFeatures: VirtioFeatures
    private let counters = Locked(Statistics())

    public var queueCount: Int { configuration.queueCount }
    public var maxQueueSize: Int { configuration.maxQueueSize }

    /// A device over `file`; writable unless the configuration or the file says read-only.
    public init(file: StorageFile, configuration: Configuration = Configuration()) {
        var configuration = configuration
        if !file.isWritable { configuration.readOnly = true }
        self.configuration = configuration
        self.file = file
        capacity = file.size / UInt64(BlockRequestHeader.sectorSize)
        var features: VirtioFeatures = [.blockSizeMax, .blockSegmentMax, .blockSize, .blockFlush]
        if configuration.queueCount > 1 { features.insert(.blockMultiQueue) }
        if configuration.readOnly { features.insert(.blockReadOnly) }
        if configuration.discard && !configuration.readOnly { features.insert(.blockDiscard) }
        if configuration.writeZeroes && !configuration.readOnly { features.insert(.blockWriteZeroes) }
        deviceFeatures = features
    }

    public var statistics: Statistics { counters.withLock { $0 } }

    /// GHT-BLK-12: the configuration space of VIRTIO 1.2 §5.2.4.
    public var configurationSpace: BlockConfigurationSpace {
        BlockConfigurationSpace(capacity: capacity, sizeMax: configuration.sizeMax, segmentMax: configuration.segmentMax,
                                blockSize: configuration.blockSize, queueCount: UInt16(configuration.queueCount),
                                maxDiscardSectors: deviceFeatures.contains(.blockDiscard) ? configuration.maxRangeSectors : 0,
                                maxDiscardSegments: deviceFeatures.contains(.blockDiscard) ? configuration.maxRangeSegments : 0,
                                discardSectorAlignment: configuration.blockSize / 512,
                                maxWriteZeroesSectors: deviceFeatures.contains(.blockWriteZeroes) ? configuration.maxRangeSectors : 0,
                                maxWriteZeroesSegments: deviceFeatures.contains(.blockWriteZeroes) ? configuration.maxRangeSegments : 0,
                                writeZeroesMayUnmap: true)
    }

    public func readConfig() -> [UInt8] { configurationSpace.bytes }

    public func process(queue: Int, batch: inout RequestBatch) {
        var tally = Statistics()
        for i in 0..<batch.count {
            var reader = batch.reader(i)
            var writer = batch.writer(i)
            // GHT-BLK-03: the status is the last writable byte; without one nothing can be said.
            guard writer.capacity >= 1 else {
                tally.unanswerable += 1
                batch.complete(i, usedLength: 0)
                continue
            }
            let status = serve(&reader, &writer, &tally)
            // GHT-BLK-07: whatever the request did not fill reads as zeros, then the status.
            writer.writeZeros(writer.remaining - 1)
            _ = try? writer.write(status.rawValue)
            switch status {
            case .ok: break
            case .ioError: tally.ioErrors += 1
            case .unsupported: tally.unsupported += 1
            }
            batch.complete(i, with: writer)
        }
        counters.withLock { s in
            s.reads += tally.reads
            s.writes += tally.writes
            s.flushes += tally.flushes
            s.bytesRead += tally.bytesRead
            s.bytesWritten += tally.bytesWritten
            s.ioErrors += tally.ioErrors
            s.unsupported += tally.unsupported
            s.unanswerable += tally.unanswerable
        }
    }

    /// Serves one request whose writer has room for the status; returns the status.
    private func serve(_ reader: inout FragmentReader, _ writer: inout FragmentWriter, _ tally: inout Statistics) -> BlockStatus {
        // GHT-BLK-01, GHT-BLK-02: the header may be split anywhere; a shorter one is an error.
        guard let header = BlockRequestHeader.read(from: &reader) else { return .ioError }
        let dataRoom = writer.capacity - 1
        switch header.type {
        case .read:
            guard let offset = byteRange(sector: header.sector, bytes: dataRoom) else { return .ioError }
            do {
                try file.read(at: offset, count: dataRoom, into: &writer)
            } catch {
                return .ioError
            }
            tally.reads += 1
            tally.bytesRead += UInt64(dataRoom)
            return .ok
        case .write:
            let count = reader.remaining
            // GHT-BLK-06: a read-only device writes nothing.
            guard !configuration.readOnly, let offset = byteRange(sector: header.sector, bytes: count) else { return .ioError }
            do {
                try file.write(at: offset, count: count, from: &reader)
            } catch {
                return .ioError
            }
            tally.writes += 1
            tally.bytesWritten += UInt64(count)
            return .ok
        case .flush:
            tally.flushes += 1
            if configuration.readOnly { return .ok }
            return (try? file.synchronize()) == nil ? .ioError : .ok
        case .getID:
            // GHT-BLK-10: up to 20 bytes, not NUL-terminated when all 20 are used.
            var id = Array(configuration.serial.utf8.prefix(20))
            id += [UInt8](repeating: 0, count: 20 - id.count)
            _ = id.prefix(dataRoom).withUnsafeBytes { writer.write($0) }
            return .ok
        case .discard where deviceFeatures.contains(.blockDiscard),
             .writeZeroes where deviceFeatures.contains(.blockWriteZeroes):
            return serveRanges(header.type, &reader)
        case .discard, .writeZeroes:
            return configuration.readOnly ? .ioError : .unsupported
        default:
            // GHT-BLK-08: any other type, including those of features not offered.
            return .unsupported
        }
    }

    /// GHT-BLK-09: DISCARD and WRITE_ZEROES. The whole list is checked before any range is touched.
    private func serveRanges(_ type: BlockRequestType, _ reader: inout FragmentReader) -> BlockStatus {
        let count = reader.remaining / BlockRangeSegment.byteCount
        guard reader.remaining % BlockRangeSegment.byteCount == 0, count >= 1, count <= Int(configuration.maxRangeSegments) else {
            return .unsupported
        }
        var ranges: [(offset: UInt64, length: UInt64, unmap: Bool)] = []
        for _ in 0..<count {
            guard let segment = BlockRangeSegment.read(from: &reader) else { return .ioError }
            let unmap = segment.flags & BlockRangeSegment.unmapFlag != 0
            // Unknown flags, and unmap on a discard, are unsupported (VIRTIO 1.2 §5.2.6.2).
            guard segment.flags & ~BlockRangeSegment.unmapFlag == 0, !(type == .discard && unmap) else { return .unsupported }
            let bytes = Int(segment.sectorCount) * BlockRequestHeader.sectorSize
            guard segment.sectorCount <= configuration.maxRangeSectors,
                  let offset = byteRange(sector: segment.sector, bytes: bytes) else { return .ioError }
            ranges.append((offset, UInt64(bytes), unmap))
        }
        do {
            for r in ranges where r.length > 0 {
                if type == .discard || r.unmap {
                    try file.deallocate(at: r.offset, length: r.length)
                } else {
                    try file.zero(at: r.offset, length: r.length)
                }
            }
        } catch {
            return .ioError
        }
        return .ok
    }

    /// GHT-BLK-04, GHT-BLK-05: the byte offset of `bytes` bytes at `sector`, if they are whole
    /// sectors inside the capacity.
    private func byteRange(sector: UInt64, bytes: Int) -> UInt64? {
        guard bytes % BlockRequestHeader.sectorSize == 0 else { return nil }
        let sectors = UInt64(bytes / BlockRequestHeader.sectorSize)
        guard sector <= capacity, sectors <= capacity - sector else { return nil }
        return sector * UInt64(BlockRequestHeader.sectorSize)
    }

    public func reset() {}
}
