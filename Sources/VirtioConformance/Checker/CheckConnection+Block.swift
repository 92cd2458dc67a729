/// virtio-blk requests (VIRTIO 1.2 §5.2.6) as the checker writes them: the 16-byte header
/// (le32 type, le32 reserved, le64 sector), the data, the status byte last.
extension CheckConnection {
    enum BlockType {
        static let read: UInt32 = 0, write: UInt32 = 1, flush: UInt32 = 4, getID: UInt32 = 8
        static let discard: UInt32 = 11, writeZeroes: UInt32 = 13
    }
    enum BlockStatus {
        static let ok: UInt8 = 0, ioError: UInt8 = 1, unsupported: UInt8 = 2
    }

    struct BlockReply {
        var status: UInt8
        var length: UInt32
        var data: [UInt8]
    }

    /// Slot `slot`'s pages: header, data, status (three pages each, from the buffer base).
    static func slotPages(_ slot: Int) -> (header: UInt64, data: UInt64, status: UInt64) {
        (CheckRing.page(slot * 3), CheckRing.page(slot * 3 + 1), CheckRing.page(slot * 3 + 2))
    }

    /// The segments of a request: the header cut at `headerCuts` (offsets in 1..<16), the data
    /// (`out`: device-readable bytes, else `inLength` device-writable ones), the status byte.
    func blockChain(slot: Int, type: UInt32, sector: UInt64, out: [UInt8]? = nil, inLength: Int = 0,
                    headerCuts: [Int] = []) -> [CheckRing.Segment] {
        let pages = Self.slotPages(slot)
        var header = [UInt8](repeating: 0, count: 16)
        for i in 0..<4 { header[i] = UInt8(truncatingIfNeeded: type >> (8 * UInt32(i))) }
        for i in 0..<8 { header[8 + i] = UInt8(truncatingIfNeeded: sector >> (8 * UInt64(i))) }
        ring.write(header, at: pages.header)
        var segments: [CheckRing.Segment] = []
        var from = 0
        for cut in headerCuts + [16] {
            segments.append(.init(address: pages.header + UInt64(from), length: UInt32(cut - from), writable: false))
            from = cut
        }
        if let out {
            ring.write(out, at: pages.data)
            segments.append(.init(address: pages.data, length: UInt32(out.count), writable: false))
        } else if inLength > 0 {
            ring.fill(0xA5, at: pages.data, count: inLength)
            segments.append(.init(address: pages.data, length: UInt32(inLength), writable: true))
        }
        ring.fill(0xEE, at: pages.status, count: 1)
        segments.append(.init(address: pages.status, length: 1, writable: true))
        return segments
    }

    func blkGetIDChain(slot: Int) -> [CheckRing.Segment] {
        blockChain(slot: slot, type: BlockType.getID, sector: 0, inLength: 20)
    }

    /// Makes one request available at head `slot * 4`, waits for it and reads its status.
    func blockRequest(slot: Int, type: UInt32, sector: UInt64, out: [UInt8]? = nil, inLength: Int = 0,
                      headerCuts: [Int] = []) throws(CheckError) -> BlockReply {
        let segments = blockChain(slot: slot, type: type, sector: sector, out: out, inLength: inLength, headerCuts: headerCuts)
        let head = slot * 4
        ring.writeChain(segments, head: head)
        make(available: [UInt16(head)])
        let used = try waitUsed(1, what: "block request type \(type) sector \(sector)")
        return reply(slot: slot, inLength: inLength, length: used[0].length)
    }

    func reply(slot: Int, inLength: Int, length: UInt32) -> BlockReply {
        let pages = Self.slotPages(slot)
        return BlockReply(status: ring.bytes(at: pages.status, count: 1)[0], length: length, data: ring.bytes(at: pages.data, count: inLength))
    }

    func blkGetID(slot: Int) throws(CheckError) -> BlockReply {
        let r = try blockRequest(slot: slot, type: BlockType.getID, sector: 0, inLength: 20)
        guard r.status == BlockStatus.ok || r.status == BlockStatus.unsupported else {
            throw .violation("GET_ID answered status \(r.status) (OK or UNSUPP expected)\n\(evidence)")
        }
        return r
    }

    /// The capacity in sectors from the configuration space (GET_CONFIG, offset 0, 8 bytes);
    /// nil when CONFIG was not negotiated.
    func blockCapacity() throws(CheckError) -> UInt64? {
        try configBytes(offset: 0, count: 8).map { $0.reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) } }
    }
}
