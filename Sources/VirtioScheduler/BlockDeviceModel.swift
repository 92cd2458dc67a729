import VirtioCore
import VirtioDevices
import VirtioTransport

/// The device model of virtio-blk (VIRTIO 1.2 §5.2) shared in turns: each guest owns a window
/// of the disk's sectors and reaches nothing outside it (GHT-MDL-03), whatever its requests
/// say. Requests the device refuses by itself without touching the disk (a short header, a
/// malformed range list, an unknown type) pass: the device answers them.
public struct BlockDeviceModel: DeviceModel {
    /// A guest's share of the disk.
    public struct Rules: Sendable, Equatable {
        /// The sectors (512 bytes) the guest may read and write.
        public var sectors: Range<UInt64>
        /// Whether the guest may only read.
        public var readOnly: Bool

        public init(sectors: Range<UInt64>, readOnly: Bool = false) {
            self.sectors = sectors
            self.readOnly = readOnly
        }
    }

    /// More ranges than this in one DISCARD or WRITE_ZEROES request are denied (the device
    /// accepts 16): it bounds the model's work per request.
    public static let rangeLimit = 256

    public private(set) var rules: Rules?
    public private(set) var inFlight = 0
    /// The header of the last request started, as the device staged it.
    private var stagedType: UInt32 = 0
    private var stagedSector: UInt64 = 0

    public init() {}

    public mutating func load(_ rules: Rules?) { self.rules = rules }

    public mutating func start(_ request: inout ModelRequest) -> ModelVerdict {
        guard let rules else { return .denied(rule: "GHT-MDL-02", reason: "no guest context loaded") }
        // GHT-ONE-01: the header is decided on, and acted on, from the request's private copy.
        var reader = request.stage(upTo: BlockRequestHeader.byteCount)
        guard let header = BlockRequestHeader.read(from: &reader) else {
            inFlight += 1
            return .allowed
        }
        stagedType = header.type.rawValue
        stagedSector = header.sector
        let payload = request.readableBytes - BlockRequestHeader.byteCount
        let verdict: ModelVerdict
        switch header.type {
        case .read:
            verdict = Self.check(rules, sector: header.sector, bytes: max(request.writableBytes - 1, 0), writes: false)
        case .write:
            verdict = Self.check(rules, sector: header.sector, bytes: payload, writes: true)
        case .discard, .writeZeroes:
            // GHT-ONE-02: the whole range list is copied too (at most `rangeLimit` ranges).
            let count = payload / BlockRangeSegment.byteCount
            guard payload % BlockRangeSegment.byteCount == 0, count >= 1 else { verdict = .allowed; break }
            guard count <= Self.rangeLimit else {
                verdict = .denied(rule: "GHT-MDL-03", reason: "\(count) ranges in one request")
                break
            }
            var ranges = request.stage(upTo: request.readableBytes)
            ranges.skip(BlockRequestHeader.byteCount)
            verdict = Self.checkRanges(rules, &ranges, count: count)
        default:
            verdict = .allowed
        }
        if verdict.isAllowed { inFlight += 1 }
        return verdict
    }

    /// GHT-MDL-03: `bytes` at `sector` (rounded up to whole sectors) lie inside the window.
    static func check(_ rules: Rules, sector: UInt64, bytes: Int, writes: Bool) -> ModelVerdict {
        if writes && rules.readOnly { return .denied(rule: "GHT-MDL-03", reason: "write to a read-only window") }
        let count = (UInt64(bytes) + 511) / 512
        let window = rules.sectors
        guard sector >= window.lowerBound, sector <= window.upperBound, count <= window.upperBound - sector else {
            return .denied(rule: "GHT-MDL-03", reason: "sectors \(sector)+\(count) outside \(window.lowerBound)..<\(window.upperBound)")
        }
        return .allowed
    }

    /// GHT-MDL-03 for DISCARD and WRITE_ZEROES: every one of the `count` ranges inside the
    /// window (a list the device refuses as a whole, ragged or empty, never gets here).
    static func checkRanges(_ rules: Rules, _ reader: inout StagedReader, count: Int) -> ModelVerdict {
        for _ in 0..<count {
            guard let segment = BlockRangeSegment.read(from: &reader) else { return .allowed }
            let verdict = check(rules, sector: segment.sector, bytes: Int(segment.sectorCount) * 512, writes: true)
            guard verdict.isAllowed else { return verdict }
        }
        return .allowed
    }

    public mutating func finish(queue: Int) { inFlight -= 1 }
    public var isReusable: Bool { inFlight == 0 }
    public mutating func reset() { self = BlockDeviceModel() }

    /// The staged type (4 bytes) and sector (8 bytes), little-endian, each on its own: a tuple
    /// of both has 4 bytes of uninitialized padding that would read as residue.
    public var residue: [UInt8] {
        withUnsafeBytes(of: stagedType.littleEndian) { Array($0) } + withUnsafeBytes(of: stagedSector.littleEndian) { Array($0) }
    }

    /// A denied request reads as the device's IOERR: zeros, then the status in the last
    /// writable byte (GHT-BLK-03); without a writable byte, an empty completion.
    public static func completeDenied(_ i: Int, in batch: inout RequestBatch) {
        var writer = batch.writer(i)
        guard writer.capacity >= 1 else { return batch.complete(i, usedLength: 0) }
        writer.writeZeros(writer.remaining - 1)
        _ = try? writer.write(BlockStatus.ioError.rawValue)
        batch.complete(i, with: writer)
    }
}
