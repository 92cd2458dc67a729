import VirtioCore
import VirtioGrants
import VhostUser

/// The fuzz targets by name, and the seed inputs each starts from: valid rings, tables and
/// transcripts of several shapes, built with the library's own driver side and codec so that
/// the fuzzer begins deep inside each target. `Fuzz/Sources/fuzz-seeds` writes them to
/// `Fuzz/Corpus/<target>/`; the tests run them directly.
public enum FuzzTargets {
    /// Every target: its name (the corpus folder) and its entry function.
    public static let all: [(name: String, run: @Sendable (UnsafeRawBufferPointer) -> Void)] = [
        ("split-device", SplitDeviceTarget.run),
        ("split-driver", SplitDriverTarget.run),
        ("packed-device", PackedDeviceTarget.run),
        ("packed-driver", PackedDriverTarget.run),
        ("grants", GrantTarget.run),
        ("chain-io", ChainIOTarget.run),
        ("vhost-user", VhostUserTarget.run),
        ("block-device", BlockDeviceTarget.run),
        ("session", SessionTarget.run),
        ("inflight-recovery", InflightRecoveryTarget.run),
    ]

    /// The seeds of the target `name`.
    public static func seeds(_ name: String) -> [[UInt8]] {
        switch name {
        case "split-device": return FuzzSeeds.splitDevice()
        case "split-driver": return FuzzSeeds.splitDriver()
        case "packed-device": return FuzzSeeds.packedDevice()
        case "packed-driver": return FuzzSeeds.packedDriver()
        case "grants": return FuzzSeeds.grants()
        case "chain-io": return FuzzSeeds.chainIO()
        case "vhost-user": return FuzzSeeds.vhostUser()
        case "block-device": return FuzzSeeds.blockDevice()
        case "session": return FuzzSeeds.session()
        case "inflight-recovery": return FuzzSeeds.inflightRecovery()
        default: return []
        }
    }
}

enum FuzzSeeds {
    static func le<T: FixedWidthInteger>(_ value: T) -> [UInt8] { withUnsafeBytes(of: value.littleEndian) { Array($0) } }

    /// Well-formed block requests of every type, each as the target reads it: u16 request
    /// length, the request, u16 writable capacity, then the split counts (none: one fragment).
    static func blockDevice() -> [[UInt8]] {
        func header(_ type: UInt32, _ sector: UInt64) -> [UInt8] { le(type) + le(UInt32(0)) + le(sector) }
        func request(_ bytes: [UInt8], capacity: Int, readSplits: [UInt16] = [], writeSplits: [UInt16] = []) -> [UInt8] {
            le(UInt16(bytes.count)) + bytes + le(UInt16(capacity)) + [UInt8(readSplits.count)] + readSplits.flatMap(le)
                + [UInt8(writeSplits.count)] + writeSplits.flatMap(le)
        }
        let data = (0..<1024).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let range = le(UInt64(4)) + le(UInt32(8)) + le(UInt32(0))
        let writable: UInt8 = 1, readOnly: UInt8 = 0
        return [
            [writable] + request(header(0, 2), capacity: 1025) + request(header(1, 2) + data, capacity: 1),
            [writable] + request(header(1, 60) + data, capacity: 1, readSplits: [3, 17, 600]) + request(header(0, 60), capacity: 1025, writeSplits: [5, 900]),
            [writable] + request(header(13, 0) + range, capacity: 1) + request(header(11, 0) + range, capacity: 1) + request(header(0, 0), capacity: 4097),
            [writable] + request(header(4, 0), capacity: 1) + request(header(8, 0), capacity: 21) + request(header(99, 0), capacity: 1),
            [writable] + request(header(1, 63) + data, capacity: 1) + request([1], capacity: 1) + request(header(1, 0) + data, capacity: 0),
            [readOnly] + request(header(1, 0) + data, capacity: 1) + request(header(0, 0), capacity: 513),
        ]
    }

    /// Rings written by the driver side: direct, multi-descriptor and indirect chains, with and
    /// without event index, followed by a device script that pops, reads, writes and completes.
    static func splitDevice() -> [[UInt8]] {
        var seeds: [[UInt8]] = []
        for (log2, features, chains) in [(3, UInt8(0), 1), (4, UInt8(1), 3), (4, UInt8(3), 6), (8, UInt8(2), 12), (1, UInt8(0), 2)] {
            let size = 1 << log2
            let region = GuestMemoryRegion(size: 64 * 1024)
            let layout = SplitRingLayout(queueSize: size)!
            let ring = try! SplitRing(layout: layout, contiguous: region.range.slice(offset: 0, length: layout.contiguousOffsets.totalSize))
            var f: VirtioFeatures = [.version1]
            if features & 1 != 0 { f.insert(.indirectDescriptors) }
            if features & 2 != 0 { f.insert(.eventIndex) }
            let pool = IndirectTablePool(block: region.range.slice(offset: 0x3000, length: 0x1000), deviceAddress: 0x3000, tableCount: 16, entriesPerTable: 16)
            var driver = SplitDriverQueue(ring: ring, features: f, indirectTables: f.contains(.indirectDescriptors) ? pool : nil)
            for c in 0..<min(chains, size) {
                let readable = (0..<(1 + c % 3)).map { BufferSegment(address: UInt64(0x4000 + c * 0x800 + $0 * 0x100), length: UInt32(16 + $0 * 8)) }
                let writable = (0..<(c % 2 + 1)).map { BufferSegment(address: UInt64(0x9000 + c * 0x400 + $0 * 0x100), length: 64) }
                _ = try? driver.add(readable: readable, writable: writable, token: UInt64(c))
            }
            driver.publish()
            region.write((0..<0x4000).map { UInt8(truncatingIfNeeded: $0 * 3) }, at: 0x4000)
            let image = region.read(at: 0, count: 0x9000)
            seeds.append([UInt8(log2), features] + le(UInt16(0)) + le(UInt16(0)) + le(UInt16(image.count)) + image + deviceScript)
        }
        return seeds
    }

    /// The device script of the device-side seeds: pop, read, write 40 bytes, add used,
    /// publish; twice; then process the rest.
    static let deviceScript: [UInt8] = Array([[UInt8]](repeating: [0, 2, 0, 0, 16, 3, 0, 0, 40, 0, 4, 0, 0, 8, 0, 0, 0, 5], count: 2).joined())
        + [10, 7, 5, 6, 1, 11, 0, 0, 1]

    /// Packed rings written by the driver side: sizes that are and are not powers of 2, lists
    /// that straddle the wrap, indirect lists, IN_ORDER; then the device script.
    static func packedDevice() -> [[UInt8]] {
        var seeds: [[UInt8]] = []
        for (size, features, chains) in [(8, UInt8(0), 1), (5, UInt8(1), 4), (12, UInt8(3), 6), (100, UInt8(6), 12), (3, UInt8(4), 2)] {
            let region = GuestMemoryRegion(size: 64 * 1024)
            let layout = PackedRingLayout(queueSize: size)!
            let ring = try! PackedRing(layout: layout, contiguous: region.range.slice(offset: 0, length: layout.contiguousOffsets.totalSize))
            var f: VirtioFeatures = [.version1, .ringPacked]
            if features & 1 != 0 { f.insert(.indirectDescriptors) }
            if features & 2 != 0 { f.insert(.eventIndex) }
            if features & 4 != 0 { f.insert(.inOrder) }
            let pool = IndirectTablePool(block: region.range.slice(offset: 0x3000, length: 0x1000), deviceAddress: 0x3000, tableCount: 16, entriesPerTable: 16)
            var driver = PackedDriverQueue(ring: ring, features: f, indirectTables: f.contains(.indirectDescriptors) ? pool : nil)
            for c in 0..<chains {
                let readable = (0..<(1 + c % 3)).map { BufferSegment(address: UInt64(0x4000 + c * 0x800 + $0 * 0x100), length: UInt32(16 + $0 * 8)) }
                let writable = (0..<(c % 2 + 1)).map { BufferSegment(address: UInt64(0x9000 + c * 0x400 + $0 * 0x100), length: 64) }
                _ = try? driver.add(readable: readable, writable: writable, token: UInt64(c))
            }
            region.write((0..<0x4000).map { UInt8(truncatingIfNeeded: $0 * 3) }, at: 0x4000)
            let image = region.read(at: 0, count: 0x9000)
            let start = PackedRingPosition.start.rawValue
            seeds.append(le(UInt16(size - 1)) + [features] + le(start) + le(start) + le(UInt16(image.count)) + image + deviceScript)
        }
        return seeds
    }

    /// The split-driver scripts over packed rings of several sizes and features.
    static func packedDriver() -> [[UInt8]] {
        splitDriver().enumerated().flatMap { (i, seed) -> [[UInt8]] in
            let script = Array(seed.dropFirst(2))
            return [le(UInt16([7, 2, 4][i % 3])) + [seed[1]] + script, le(UInt16([2, 99, 0][i % 3])) + [seed[1] | 4] + script]
        }
    }

    /// Adds, publishes, honest completions and reaps; then a hostile element and index.
    static func splitDriver() -> [[UInt8]] {
        let add: [UInt8] = [0, 1] + le(UInt16(0x4000)) + le(UInt32(64)) + [1] + le(UInt16(0x5000)) + [0] + le(UInt32(128)) + [0]
        let complete: [UInt8] = [5] + le(UInt16(0)) + le(UInt32(100))
        return [
            [3, 0] + add + add + [2] + complete + complete + [6],
            [4, 3] + add + add + add + [2, 8, 0] + complete + [6] + [3] + le(UInt16(1)) + [1, 3] + [1, 5] + [4, 1, 1, 6],
            [2, 1] + add + [2] + [3] + le(UInt16(0)) + [0] + le(UInt32(0xFFFF)) + [0] + le(UInt32(0x10000)) + [4, 1, 1, 6, 9],
        ]
    }

    /// Grants, maps, translations, copies, revokes and ends of access, with a hostile write.
    static func grants() -> [[UInt8]] {
        [
            [0, 0, 3, 0, 5, 8, 1, 7, 8, 1] + le(UInt16(16)) + le(UInt16(64)) + [2, 8, 0, 9, 8, 2, 8, 0],
            [0, 1, 4, 2, 0, 5, 9, 0, 7, 9, 0] + le(UInt16(4000)) + le(UInt16(200)) + [8, 9, 1] + le(UInt16(8)) + le(UInt16(32)) + [6, 1, 3, 9, 1],
            [0, 0, 1, 1, 4, 10, 1, 1, 0, 4, 9] + le(UInt16(0x0005)) + [1, 1, 5, 9, 1, 11, 3, 10, 1, 11, 0, 12, 2, 1, 10, 0],
        ]
    }

    /// Chains of several layouts in both translation modes.
    static func chainIO() -> [[UInt8]] {
        var seeds: [[UInt8]] = []
        for grant in [UInt8(0), 1] {
            var seed: [UInt8] = [grant] + le(UInt16(0b0000_0000_0100_0000)) + le(UInt16(0b0000_0010_0000_0000))
            for shape in 0..<4 {
                seed += [UInt8(1 + shape % 3), UInt8(shape % 3)]
                for k in 0..<(1 + shape % 3) { seed += le(UInt16(k * 5000 + 4000 * shape)) + le(UInt16(100 + 3000 * k)) }
                for k in 0..<(shape % 3) { seed += le(UInt16(30000 + k * 4100)) + le(UInt16(500 + 4000 * k)) }
                seed += [UInt8(shape % 3)] + le(UInt16(700)) + [1] + le(UInt16(3000)) + [1] + le(UInt16(5000)) + le(UInt16(9))
            }
            seeds.append(seed)
        }
        return seeds
    }

    /// A full negotiation and queue setup (guest-physical, then grant mode), a chain written
    /// into the shared memory, a kick, and the queue stopped.
    static func vhostUser() -> [[UInt8]] {
        let user: UInt64 = 0x7F00_0000_0000
        func message(_ m: VhostUserMessage, fds: Int = 0, memfd: Bool = false, needReply: Bool = true) -> [UInt8] {
            let bytes = try! VhostUserCodec.encode(m, needReply: needReply)
            return [2, UInt8(fds) | (memfd ? 0x10 : 0)] + le(UInt16(bytes.count)) + bytes
        }
        func memory(_ offset: Int, _ bytes: [UInt8]) -> [UInt8] { [0] + le(UInt16(offset)) + [UInt8(bytes.count)] + bytes }
        var seeds: [[UInt8]] = []
        for grants in [false, true] {
            var s: [UInt8] = []
            var protocolFeatures: VhostUserProtocolFeatures = [.replyAck, .status, .config, .configureMemorySlots]
            if grants { protocolFeatures.insert(.grantTable) }
            s += message(.getFeatures, needReply: false) + message(.getProtocolFeatures, needReply: false)
            s += message(.setProtocolFeatures(protocolFeatures)) + message(.setOwner) + message(.getQueueNum, needReply: false)
            let region = VhostUserMemoryRegion(guestAddress: 0, size: 0x10000, userAddress: user, mmapOffset: 0)
            s += message(.setMemoryTable(VhostUserMemoryTable(regions: [region])), fds: 1, memfd: true)
            var features: VirtioFeatures = [.version1, .vhostUserProtocolFeatures, .eventIndex, .indirectDescriptors]
            if grants {
                features.insert(.accessPlatform)
                s += message(.setGrantTable(VhostUserGrantTable(granter: DomainID(1), grantee: DomainID(0), tableSize: 0x1000, tableOffset: 0xF000,
                                                                framesGuestAddress: 0, frameCount: 15)), fds: 1, memfd: true)
            }
            s += message(.setFeatures(features))
            for st: DeviceStatus in [[.acknowledge], [.acknowledge, .driver], [.acknowledge, .driver, .featuresOK]] { s += message(.setStatus(st)) }
            s += message(.getConfig(.request(offset: 0, size: 8)), needReply: false)
            // Queue 0: 16 entries, descriptor table at 0, available ring at 0x100, used ring at 0x200.
            let ringAddress = { (offset: UInt64) in grants ? GrantHandle(reference: GrantReference(8), offset: Int(offset)).rawValue : user + offset }
            s += message(.setVringNum(VhostUserVringState(index: 0, num: 16)))
            s += message(.setVringAddress(VhostUserVringAddress(index: 0, descriptor: ringAddress(0), used: ringAddress(0x200), available: ringAddress(0x100), log: 0)))
            s += message(.setVringBase(VhostUserVringState(index: 0, num: 0)))
            s += message(.setVringKick(VhostUserVringFile(index: 0)), fds: 1)
            s += message(.setVringCall(VhostUserVringFile(index: 0)), fds: 1)
            s += message(.setVringEnable(VhostUserVringState(index: 0, num: 1)))
            if grants {
                // Grant entries 8 and 9 (frames 0 and 1) to domain 0, read-write, in the table at 0xF000.
                s += memory(0xF000 + 8 * 8, [1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0])
            }
            // One chain: descriptor 0 readable (16 bytes at 0x1000), next 1 writable (64 bytes at 0x1100).
            let buffer = { (offset: UInt64) in grants ? GrantHandle(reference: GrantReference(9), offset: Int(offset - 0x1000)).rawValue : offset }
            s += memory(0, le(buffer(0x1000)) + le(UInt32(16)) + le(UInt16(1)) + le(UInt16(1)))
            s += memory(16, le(buffer(0x1100)) + le(UInt32(64)) + le(UInt16(2)) + le(UInt16(0)))
            s += memory(0x100, le(UInt16(0)) + le(UInt16(1)) + le(UInt16(0)))
            s += memory(0x1000, Array("sixteen bytes!!!".utf8))
            s += message(.setStatus([.acknowledge, .driver, .featuresOK, .driverOK]))
            s += [1]
            s += message(.getStatus, needReply: false) + message(.getVringBase(VhostUserVringState(index: 0, num: 0)), needReply: false)
            seeds.append(s)
        }
        return seeds
    }
}
