import VirtioCore
import VirtioTransport
import VirtioSystem

extension BlockDevice {
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
        /// How request I/O reaches the file (GHT-BLK-13): `.ioUring` (the default) when the
        /// kernel allows it, else, or with `.synchronous`, inside `process` as before.
        public var asynchronousIO: AsynchronousIO = .ioUring
        /// Submission entries of each queue's ring: the requests one queue has in the kernel
        /// at once (clamped to 1...4096). Default: the largest queue size.
        public var ringEntries: Int?
        /// How long stopping a queue waits for its I/O in the kernel (GHT-BLK-27).
        public var stopTimeoutMilliseconds: Int32 = 10_000

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
        /// Requests handed to an io_uring (the rest were served inside `process`).
        public var submitted: UInt64 = 0
        /// The most requests one queue had in the kernel at once.
        public var peakInFlight: UInt64 = 0
        /// Requests served synchronously although their queue had a ring (more buffers than
        /// one entry carries, or no room in time).
        public var synchronousFallbacks: UInt64 = 0
        /// Flushes held in the device until the writes made available before them completed.
        public var flushesHeld: UInt64 = 0
    }

    /// How a block device moves request data (`--aio` of `virtio-grant serve`).
    public enum AsynchronousIO: String, Sendable, CaseIterable {
        /// One io_uring per queue (GHT-BLK-13), falling back to `.synchronous` where the kernel
        /// refuses it or `VIRTIO_GRANT_AIO=sync` is set (GHT-OS-31).
        case ioUring = "io_uring"
        /// `preadv`/`pwritev`/`fdatasync`/`fallocate` inside `process`, one request at a time.
        case synchronous = "sync"
    }
}
