import VirtioCore
import VirtioDevices
import VirtioTransport

/// The data-path check run on every back-end before it is measured, so that a fast but wrong
/// back-end is caught: on each queue, `blocks` distinct 4 KiB blocks are written with a pattern
/// that names the block and this run (up to 32 writes in flight, so completions may come back
/// in any order), then read back, also 32 at a time, and compared byte for byte.
struct BlockVerification {
    var written = 0
    var readBack = 0
    /// Blocks whose bytes read back differ from what was written.
    var mismatches = 0
    /// Requests with a status other than OK or a reply of the wrong length.
    var errors = 0
    var failure: String?

    var ok: Bool { failure == nil && mismatches == 0 && errors == 0 && readBack == written && written > 0 }

    /// The pattern of block `block` in the run `nonce`: 64-bit words that differ per block, per
    /// run and per word, so a stale, misplaced or partial block does not match.
    static func pattern(block: UInt64, nonce: UInt64) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: BlockBenchmark.blockBytes)
        bytes.withUnsafeMutableBytes { raw in
            for word in 0..<(BlockBenchmark.blockBytes / 8) {
                let value = (block &* 0x9E37_79B9_7F4A_7C15) ^ nonce ^ (UInt64(word) &* 0xBF58_476D_1CE4_E5B9)
                raw.storeBytes(of: value.littleEndian, toByteOffset: word * 8, as: UInt64.self)
            }
        }
        return bytes
    }

    /// Writes then reads back `blocks` blocks per queue of `frontEnd` on a disk of `diskBlocks`.
    static func run(_ frontEnd: FrontEnd, blocks: Int, diskBlocks: UInt64, nonce: UInt64) -> BlockVerification {
        var result = BlockVerification()
        let queueCount = UInt64(frontEnd.queues.count)
        // Distinct blocks spread over the disk, each queue its own.
        let stride = max(1, diskBlocks / UInt64(blocks) / queueCount) | 1
        for queue in frontEnd.queues {
            let mine = (0..<UInt64(blocks)).map { ($0 * queueCount + UInt64(queue.index)) * stride % diskBlocks }
            do throws(FrontEndError) {
                try transfer(queue, blocks: mine, write: true, nonce: nonce, into: &result)
                try transfer(queue, blocks: mine, write: false, nonce: nonce, into: &result)
            } catch {
                result.failure = "queue \(queue.index): \(error)"
                return result
            }
        }
        return result
    }

    private static func transfer(_ queue: FrontEndQueue, blocks: [UInt64], write: Bool, nonce: UInt64,
                                 into result: inout BlockVerification) throws(FrontEndError) {
        var blockOfToken: [UInt64: UInt64] = [:]
        var next = 0
        let sectorsPerBlock = UInt64(BlockBenchmark.blockBytes / BlockRequestHeader.sectorSize)
        while next < blocks.count || !blockOfToken.isEmpty {
            while next < blocks.count && blockOfToken.count < 32 && queue.freeCount > 0 {
                let block = blocks[next]
                let header = BlockRequestHeader(type: write ? .write : .read, sector: block * sectorsPerBlock).bytes
                let token = try queue.submit(write ? header + pattern(block: block, nonce: nonce) : header,
                                             replyCapacity: write ? 1 : BlockBenchmark.blockBytes + 1)
                blockOfToken[token] = block
                next += 1
            }
            try queue.publish()
            try queue.waitForCompletions { token, reply in
                guard let block = blockOfToken.removeValue(forKey: token) else { result.errors += 1; return }
                let expected = write ? 1 : BlockBenchmark.blockBytes + 1
                guard reply.count == expected, reply[expected - 1] == BlockStatus.ok.rawValue else { result.errors += 1; return }
                if write {
                    result.written += 1
                } else {
                    result.readBack += 1
                    if !pattern(block: block, nonce: nonce).elementsEqual(reply.prefix(BlockBenchmark.blockBytes)) { result.mismatches += 1 }
                }
            }
        }
    }
}
