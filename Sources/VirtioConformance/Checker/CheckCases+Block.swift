/// virtio-blk's device rules (VIRTIO 1.2 §5.2.6; Spec/devices.md GHT-BLK-xx).
extension CheckCase {
    typealias T = CheckConnection.BlockType
    typealias S = CheckConnection.BlockStatus

    static var blockCases: [CheckCase] {
        [
            CheckCase("blk-get-id", ["GHT-BLK-10"], device: .blk,
                      rule: "GET_ID answers the serial's first 20 bytes, cut to the writable room, with status OK") { ctx throws(CheckError) in
                let c = try ctx.running()
                let r = try c.blkGetID(slot: 0)
                guard r.status == S.ok else { throw .violation("GET_ID status \(r.status)\n\(c.evidence)") }
            },
            CheckCase("blk-write-read", ["GHT-BLK-07"], device: .blk,
                      rule: "a write of one sector then a read of it give status OK and the bytes written; the status is the last writable byte") { ctx throws(CheckError) in
                let c = try ctx.running()
                guard c.negotiated.rawValue & (1 << 5) == 0 else { throw .notApplicable("read-only device (RO)") }
                let pattern = (0..<512).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }
                let w = try c.blockRequest(slot: 0, type: T.write, sector: 1, out: pattern)
                guard w.status == S.ok else { throw .violation("write of sector 1: status \(w.status)\n\(c.evidence)") }
                let r = try c.blockRequest(slot: 1, type: T.read, sector: 1, inLength: 512)
                guard r.status == S.ok, r.data == pattern else {
                    throw .violation("read of sector 1: status \(r.status), data \(r.data == pattern ? "as written" : "differs: \(CheckConnection.hex(r.data.prefix(16)))")\n\(c.evidence)")
                }
            },
            CheckCase("blk-header-split", ["GHT-BLK-01"], device: .blk,
                      rule: "the 16-byte request header is read wherever the driver split it across descriptors") { ctx throws(CheckError) in
                let c = try ctx.running()
                for cuts in [[1], [4, 5], [3, 8, 15]] {
                    let r = try c.blockRequest(slot: 0, type: T.read, sector: 0, inLength: 512, headerCuts: cuts)
                    guard r.status == S.ok else { throw .violation("a read with its header cut at \(cuts): status \(r.status)\n\(c.evidence)") }
                }
            },
            CheckCase("blk-capacity", ["GHT-BLK-04"], device: .blk,
                      rule: "IN and OUT are checked against the capacity: sector + bytes/512 ≤ capacity, otherwise IOERR") { ctx throws(CheckError) in
                let c = try ctx.running()
                guard let capacity = try c.blockCapacity() else { throw .notApplicable("CONFIG not offered: the capacity is unknown") }
                let last = try c.blockRequest(slot: 0, type: T.read, sector: capacity - 1, inLength: 512)
                guard last.status == S.ok else { throw .violation("a read of the last sector (\(capacity - 1)): status \(last.status)\n\(c.evidence)") }
                for (sector, count) in [(capacity, 512), (capacity - 1, 1024), (UInt64.max, 512)] {
                    let r = try c.blockRequest(slot: 1, type: T.read, sector: sector, inLength: count)
                    guard r.status == S.ioError else {
                        throw .violation("a read of \(count / 512) sector(s) at \(sector), capacity \(capacity): status \(r.status), IOERR (1) expected\n\(c.evidence)")
                    }
                }
            },
            CheckCase("blk-flush", ["GHT-BLK-11"], device: .blk,
                      rule: "with FLUSH offered, a FLUSH request completes with status OK") { ctx throws(CheckError) in
                let c = try ctx.running()
                guard c.negotiated.rawValue & (1 << 9) != 0 else { throw .notApplicable("FLUSH not offered") }
                let r = try c.blockRequest(slot: 0, type: T.flush, sector: 0)
                guard r.status == S.ok else { throw .violation("FLUSH: status \(r.status)\n\(c.evidence)") }
            },
            CheckCase("blk-unsupported-type", ["GHT-BLK-08"], device: .blk,
                      rule: "a request type the device does not implement is answered UNSUPP") { ctx throws(CheckError) in
                let c = try ctx.running()
                let r = try c.blockRequest(slot: 0, type: 0x7f, sector: 0, inLength: 16)
                guard r.status == S.unsupported else { throw .violation("request type 0x7f: status \(r.status), UNSUPP (2) expected\n\(c.evidence)") }
            },
            CheckCase("blk-write-zeroes", ["GHT-BLK-09"], device: .blk,
                      rule: "with WRITE_ZEROES offered, one segment (le64 sector, le32 num_sectors, le32 flags) zeroes the range, status OK") { ctx throws(CheckError) in
                try discardLike(ctx, type: T.writeZeroes, bit: 14)
            },
            CheckCase("blk-discard", ["GHT-BLK-09"], device: .blk,
                      rule: "with DISCARD offered, one segment (le64 sector, le32 num_sectors, le32 flags 0) completes with status OK") { ctx throws(CheckError) in
                try discardLike(ctx, type: T.discard, bit: 13)
            },
        ]
    }

    private static func discardLike(_ ctx: CheckContext, type: UInt32, bit: UInt64) throws(CheckError) {
        let c = try ctx.running()
        guard c.negotiated.rawValue & (1 << bit) != 0 else { throw .notApplicable("feature bit \(bit) not offered") }
        let segment: [UInt8] = [2, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]   // sector 2, one sector, flags 0
        let r = try c.blockRequest(slot: 0, type: type, sector: 0, out: segment)
        guard r.status == S.ok else { throw .violation("request type \(type) of sector 2: status \(r.status)\n\(c.evidence)") }
        if type == T.writeZeroes {
            let read = try c.blockRequest(slot: 1, type: T.read, sector: 2, inLength: 512)
            guard read.data.allSatisfy({ $0 == 0 }) else { throw .violation("sector 2 is not zero after WRITE_ZEROES\n\(c.evidence)") }
        }
    }
}
