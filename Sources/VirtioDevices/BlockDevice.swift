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
/// moves between the file and guest memory with no copy: through the queue's io_uring, many
/// requests in the kernel at once and completed out of order (`BlockDevice+Engine.swift`), or
/// with `preadv`/`pwritev` inside ``process(queue:batch:)`` where io_uring is off or refused.
public final class BlockDevice: VirtioDevice {
    public let deviceID: UInt32 = 2
    public let configuration: Configuration
    public let file: StorageFile
    /// The capacity in 512-byte sectors (the file's size, rounded down).
    public let capacity: UInt64
    public let deviceFeatures: VirtioFeatures
    private let counters = Locked(Statistics())
    /// Each queue's io_uring engine while the queue runs (GHT-BLK-13).
    let engines: Locked<[BlockQueueEngine?]>
    /// Engines stopped with I/O still in the kernel: kept (their requests keep guest memory
    /// mapped) until that I/O completes.
    let retired = Locked<[BlockQueueEngine]>([])

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
        engines = Locked([BlockQueueEngine?](repeating: nil, count: configuration.queueCount))
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
        let engine = activeEngine(queue)
        for i in 0..<batch.count {
            var reader = batch.reader(i)
            var writer = batch.writer(i)
            // GHT-BLK-03: the status is the last writable byte; without one nothing can be said.
            guard writer.capacity >= 1 else {
                tally.unanswerable += 1
                batch.complete(i, usedLength: 0)
                continue
            }
            // Every check of Spec/devices.md §1 happens here, before any I/O, on either path.
            let operation = plan(&reader, &writer, &tally)
            if let engine, operation.isFileIO {
                // GHT-BLK-13: kept, its I/O in the queue's ring; completed by serviceQueue.
                engine.start(operation, batch.completeLater(i), device: self)
                continue
            }
            let status = perform(operation, &reader, &writer, &tally)
            Self.finish(status, &writer, &tally)
            batch.complete(i, with: writer)
        }
        if let engine {
            engine.submit()
            record(engine.takeTally())
        }
        record(tally)
    }

    /// GHT-BLK-07: whatever the request did not fill reads as zeros, then the status.
    static func finish(_ status: BlockStatus, _ writer: inout FragmentWriter, _ tally: inout Statistics) {
        writer.writeZeros(writer.remaining - 1)
        _ = try? writer.write(status.rawValue)
        switch status {
        case .ok: break
        case .ioError: tally.ioErrors += 1
        case .unsupported: tally.unsupported += 1
        }
    }

    /// Adds a batch's counts to the statistics.
    func record(_ tally: Statistics) {
        counters.withLock { s in
            s.reads += tally.reads
            s.writes += tally.writes
            s.flushes += tally.flushes
            s.bytesRead += tally.bytesRead
            s.bytesWritten += tally.bytesWritten
            s.ioErrors += tally.ioErrors
            s.unsupported += tally.unsupported
            s.unanswerable += tally.unanswerable
            s.submitted += tally.submitted
            s.peakInFlight = max(s.peakInFlight, tally.peakInFlight)
            s.synchronousFallbacks += tally.synchronousFallbacks
            s.flushesHeld += tally.flushesHeld
        }
    }
}
