import VirtioCore
import VirtioTransport

/// virtio-blk feature bits (VIRTIO 1.2 §5.2.3).
extension VirtioFeatures {
    /// SIZE_MAX (1): `size_max` bounds any single segment.
    public static var blockSizeMax: VirtioFeatures { VirtioFeatures(bit: 1) }
    /// SEG_MAX (2): `seg_max` bounds the data segments of a request.
    public static var blockSegmentMax: VirtioFeatures { VirtioFeatures(bit: 2) }
    /// RO (5): the device is read-only.
    public static var blockReadOnly: VirtioFeatures { VirtioFeatures(bit: 5) }
    /// BLK_SIZE (6): `blk_size` is the optimal block size.
    public static var blockSize: VirtioFeatures { VirtioFeatures(bit: 6) }
    /// FLUSH (9): the FLUSH command.
    public static var blockFlush: VirtioFeatures { VirtioFeatures(bit: 9) }
    /// MQ (12): `num_queues` request queues.
    public static var blockMultiQueue: VirtioFeatures { VirtioFeatures(bit: 12) }
    /// DISCARD (13): the DISCARD command.
    public static var blockDiscard: VirtioFeatures { VirtioFeatures(bit: 13) }
    /// WRITE_ZEROES (14): the WRITE_ZEROES command.
    public static var blockWriteZeroes: VirtioFeatures { VirtioFeatures(bit: 14) }
}

/// A virtio-blk request type (VIRTIO 1.2 §5.2.6, `VIRTIO_BLK_T_*`).
public struct BlockRequestType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let read = Self(rawValue: 0)
    public static let write = Self(rawValue: 1)
    public static let flush = Self(rawValue: 4)
    public static let getID = Self(rawValue: 8)
    public static let getLifetime = Self(rawValue: 10)
    public static let discard = Self(rawValue: 11)
    public static let writeZeroes = Self(rawValue: 13)
    public static let secureErase = Self(rawValue: 14)

    public var description: String {
        switch self {
        case .read: return "IN"
        case .write: return "OUT"
        case .flush: return "FLUSH"
        case .getID: return "GET_ID"
        case .getLifetime: return "GET_LIFETIME"
        case .discard: return "DISCARD"
        case .writeZeroes: return "WRITE_ZEROES"
        case .secureErase: return "SECURE_ERASE"
        default: return "type \(rawValue)"
        }
    }
}

/// The status byte a virtio-blk device writes last (VIRTIO 1.2 §5.2.6, `VIRTIO_BLK_S_*`).
public enum BlockStatus: UInt8, Sendable {
    case ok = 0
    case ioError = 1
    case unsupported = 2
}

/// The fixed header of every virtio-blk request: le32 type, le32 reserved, le64 sector
/// (VIRTIO 1.2 §5.2.6, `struct virtio_blk_req`). Sectors are 512 bytes whatever `blk_size` says.
public struct BlockRequestHeader: Hashable, Sendable {
    public static let byteCount = 16
    public static let sectorSize = 512

    public var type: BlockRequestType
    public var sector: UInt64

    public init(type: BlockRequestType, sector: UInt64) {
        self.type = type
        self.sector = sector
    }

    /// The header as a driver lays it out.
    public var bytes: [UInt8] {
        withUnsafeBytes(of: (type.rawValue.littleEndian, UInt32(0), sector.littleEndian)) { Array($0) }
    }

    /// Reads a header from the start of a request; nil when the request is shorter.
    public static func read(from reader: inout some LittleEndianReading) -> BlockRequestHeader? {
        guard let type = try? reader.read(UInt32.self), (try? reader.read(UInt32.self)) != nil,
              let sector = try? reader.read(UInt64.self) else { return nil }
        return BlockRequestHeader(type: BlockRequestType(rawValue: type), sector: sector)
    }
}

/// One segment of a DISCARD or WRITE_ZEROES request: le64 sector, le32 num_sectors, le32 flags
/// (bit 0 unmap) (VIRTIO 1.2 §5.2.6, `struct virtio_blk_discard_write_zeroes`).
public struct BlockRangeSegment: Hashable, Sendable {
    public static let byteCount = 16
    public static let unmapFlag: UInt32 = 1

    public var sector: UInt64
    public var sectorCount: UInt32
    public var flags: UInt32

    public init(sector: UInt64, sectorCount: UInt32, flags: UInt32 = 0) {
        self.sector = sector
        self.sectorCount = sectorCount
        self.flags = flags
    }

    public var bytes: [UInt8] {
        withUnsafeBytes(of: (sector.littleEndian, sectorCount.littleEndian, flags.littleEndian)) { Array($0) }
    }

    public static func read(from reader: inout some LittleEndianReading) -> BlockRangeSegment? {
        guard let sector = try? reader.read(UInt64.self), let count = try? reader.read(UInt32.self),
              let flags = try? reader.read(UInt32.self) else { return nil }
        return BlockRangeSegment(sector: sector, sectorCount: count, flags: flags)
    }
}

/// The virtio-blk configuration space (VIRTIO 1.2 §5.2.4, `struct virtio_blk_config`), the
/// fields this device fills; the rest read as zero.
public struct BlockConfigurationSpace: Hashable, Sendable {
    /// Bytes of the VIRTIO 1.2 structure, secure-erase fields included (zero: not offered).
    /// A front-end may read fewer: QEMU 7.2's vhost-user-blk reads the first 60.
    public static let byteCount = 72

    public var capacity: UInt64
    public var sizeMax: UInt32
    public var segmentMax: UInt32
    public var blockSize: UInt32
    public var queueCount: UInt16
    public var maxDiscardSectors: UInt32
    public var maxDiscardSegments: UInt32
    public var discardSectorAlignment: UInt32
    public var maxWriteZeroesSectors: UInt32
    public var maxWriteZeroesSegments: UInt32
    public var writeZeroesMayUnmap: Bool

    /// The little-endian layout a driver reads.
    public var bytes: [UInt8] {
        var b = [UInt8](repeating: 0, count: Self.byteCount)
        func put<T: FixedWidthInteger>(_ value: T, at offset: Int) {
            withUnsafeBytes(of: value.littleEndian) { for (i, byte) in $0.enumerated() { b[offset + i] = byte } }
        }
        put(capacity, at: 0)
        put(sizeMax, at: 8)
        put(segmentMax, at: 12)
        put(blockSize, at: 20)
        put(queueCount, at: 34)
        put(maxDiscardSectors, at: 36)
        put(maxDiscardSegments, at: 40)
        put(discardSectorAlignment, at: 44)
        put(maxWriteZeroesSectors, at: 48)
        put(maxWriteZeroesSegments, at: 52)
        b[56] = writeZeroesMayUnmap ? 1 : 0
        return b
    }
}
