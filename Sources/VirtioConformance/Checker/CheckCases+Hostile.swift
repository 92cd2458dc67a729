import VirtioCore
import VhostUser

/// Hostile input (Spec/transport.md GHT-VAL-xx, Spec/vhost-user.md GHT-VU-xx, Spec/hostile-peers.md
/// GHT-LIFE-xx). The defined outcomes are a broken queue (nothing used, or used within the
/// rules) or a closed connection; the back-end must still answer or have hung up, and its
/// process must live (GHT-CHK-02: a crash is always a failure).
extension CheckCase {
    /// A hostile case: `act` does the damage on a running queue; then any used element must be
    /// within the rules and the back-end must answer GET_FEATURES or have closed.
    static func hostile(_ name: String, _ ids: [String], device: CheckDevice? = .blk, rule: String, sealed: Bool = true,
                        _ act: @escaping @Sendable (CheckConnection) throws(CheckError) -> Void) -> CheckCase {
        CheckCase(name, ids + ["GHT-VU-21"], device: device, rule: rule + "; the back-end never crashes on peer input") { ctx throws(CheckError) in
            let c = try ctx.connect(sealed: sealed)
            if device != nil { try c.bringUp() } else { try c.handshake() }
            do throws(CheckError) {
                try act(c)
                _ = try c.usedWithin(milliseconds: 150)
            } catch {
                if case .closed = error { return }
                throw error
            }
            _ = try c.answersOrClosed()
        }
    }

    static var hostileCases: [CheckCase] {
        [
            hostile("hostile-chain-loop", ["GHT-VAL-05"], rule: "a chain has at most queue-size segments; a loop breaks the queue") { c throws(CheckError) in
                let pages = CheckConnection.slotPages(0)
                c.ring.writeDescriptor(0, address: pages.header, length: 16, flags: 1, next: 1)
                c.ring.writeDescriptor(1, address: pages.data, length: 16, flags: 1, next: 0)
                c.ring.inFlight[0] = 0
                c.make(available: [0])
            },
            hostile("hostile-head-out-of-range", ["GHT-VAL-02"], rule: "a head read from the available ring must be smaller than the queue size") { c throws(CheckError) in
                c.make(available: [200])
            },
            hostile("hostile-next-out-of-range", ["GHT-VAL-04"], rule: "a next link must be smaller than the size of the table it indexes") { c throws(CheckError) in
                c.ring.writeDescriptor(0, address: CheckConnection.slotPages(0).header, length: 16, flags: 1, next: 999)
                c.ring.inFlight[0] = 0
                c.make(available: [0])
            },
            hostile("hostile-write-then-read", ["GHT-VAL-11", "FRM-DRV-01"], rule: "a device-readable segment after a device-writable one is malformed") { c throws(CheckError) in
                // The header (readable), the status byte (writable), then the data marked readable.
                let s = c.blockChain(slot: 0, type: CheckConnection.BlockType.read, sector: 0, inLength: 512)
                var data = s[1]
                data.writable = false
                c.ring.writeChain([s[0], s[2], data], head: 0)
                c.make(available: [0])
            },
            hostile("hostile-zero-length", ["GHT-BLK-02"], rule: "a request with fewer than 16 device-readable bytes (a zero-length header descriptor) is answered IOERR or the queue breaks") { c throws(CheckError) in
                let pages = CheckConnection.slotPages(0)
                c.ring.writeDescriptor(0, address: pages.header, length: 0, flags: 1, next: 1)
                c.ring.writeDescriptor(1, address: pages.status, length: 1, flags: 2)
                c.ring.inFlight[0] = 1
                c.make(available: [0])
            },
            hostile("hostile-nested-indirect", ["GHT-VAL-08", "IND-DRV-02"], rule: "an INDIRECT descriptor inside an indirect table is malformed") { c throws(CheckError) in
                guard c.negotiated.contains(.indirectDescriptors) else { throw .notApplicable("INDIRECT_DESC not offered") }
                c.ring.inFlight[0] = CheckRing.capacity(c.writeNestedIndirect())
                c.make(available: [0])
            },
            hostile("hostile-indirect-too-long", ["GHT-VAL-10", "IND-DRV-03"], rule: "an indirect table with more entries than the queue size is malformed") { c throws(CheckError) in
                guard c.negotiated.contains(.indirectDescriptors) else { throw .notApplicable("INDIRECT_DESC not offered") }
                let header = CheckConnection.slotPages(0).header
                let n = c.ring.size * 2
                for i in 0..<n {
                    c.ring.writeDescriptor(i, address: header, length: 16, flags: i == n - 1 ? 0 : 1, next: UInt16(i + 1), table: CheckRing.indirectBase)
                }
                c.ring.writeDescriptor(0, address: CheckRing.indirectBase, length: UInt32(n * 16), flags: 4)
                c.ring.inFlight[0] = 0
                c.make(available: [0])
            },
            hostile("hostile-avail-jump", ["GHT-VAL-01"], rule: "the available index may move forward by at most the queue size") { c throws(CheckError) in
                c.ring.writeChain(c.blkGetIDChain(slot: 0), head: 0)
                c.ring.publishIndex(c.ring.availIndex &+ 1000)
                c.note("avail idx → \(c.ring.availIndex &+ 1000) (a jump of 1000 over a queue of \(c.ring.size))")
                try? c.kick.signal()
            },
            hostile("hostile-short-payload", ["GHT-VU-07"], device: nil, rule: "a request whose payload is shorter than its type is refused") { c throws(CheckError) in
                try c.sendRaw(VhostUserRequest.setVringNum.rawValue, payload: [0, 0, 0, 0], label: "SET_VRING_NUM with a 4-byte payload")
            },
            hostile("hostile-bad-request", ["GHT-VU-06", "GHT-VU-22"], device: nil, rule: "an unknown request number is refused or ignored, and the session goes on or ends") { c throws(CheckError) in
                try c.sendRaw(9999, payload: [1, 2, 3, 4, 5, 6, 7, 8], label: "request 9999")
            },
            hostile("hostile-fd-count", ["GHT-VU-08"], device: nil, rule: "a request with one descriptor too many or too few is refused") { c throws(CheckError) in
                try c.sendRaw(VhostUserRequest.setVringKick.rawValue, payload: VhostUserVringFile(index: 0).encoded(), label: "SET_VRING_KICK without its descriptor")
                try c.sendRaw(VhostUserRequest.setVringCall.rawValue, payload: VhostUserVringFile(index: 0).encoded(),
                              fds: [c.call.fd.rawValue, c.kick.fd.rawValue], label: "SET_VRING_CALL with two descriptors")
            },
            hostile("hostile-memory-overlap", ["GHT-VU-10"], device: nil, rule: "a memory table is refused or used within its regions; overlapping regions must not crash the back-end") { c throws(CheckError) in
                let size = UInt64(c.memory.size), user = UInt64(c.memory.range.startAddress)
                let regions = [VhostUserMemoryRegion(guestAddress: 0, size: size, userAddress: user, mmapOffset: 0),
                               VhostUserMemoryRegion(guestAddress: 0x1000, size: size - 0x1000, userAddress: user + 0x1000, mmapOffset: 0x1000)]
                _ = try c.set(.setMemoryTable(VhostUserMemoryTable(regions: regions)), fds: [c.memory.fd.rawValue, c.memory.fd.rawValue])
            },
            hostile("hostile-region-beyond-file", ["GHT-VU-10", "GHT-LIFE-03"],
                    rule: "a region larger than its file is refused, or an access past the file's end costs only the session") { c throws(CheckError) in
                // The table says 4× the file; the ring stays inside, the request's buffers lie past the end.
                let size = UInt64(c.memory.size), user = UInt64(c.memory.range.startAddress)
                let region = VhostUserMemoryRegion(guestAddress: 0, size: size * 4, userAddress: user, mmapOffset: 0)
                guard try c.set(.setMemoryTable(VhostUserMemoryTable(regions: [region])), fds: [c.memory.fd.rawValue]) == 0 else { return }
                try c.startQueue(at: c.ring.usedSeen)
                c.ring.writeDescriptor(0, address: size * 2, length: 16, flags: 1, next: 1)
                c.ring.writeDescriptor(1, address: size * 2 + 4096, length: 1, flags: 2)
                c.ring.inFlight[0] = 1
                c.make(available: [0])
            },
            hostile("hostile-truncated-memory", ["GHT-LIFE-03"], rule: "a front-end that shrinks a shared file under the back-end's mapping costs only its own session", sealed: false) { c throws(CheckError) in
                _ = try c.blkGetID(slot: 0)
                // Keep the ring's pages (0..<0x8000); drop the buffers, then make a request in them available.
                do { try c.memory.fd.truncate(to: Int(CheckRing.bufferBase)) } catch { throw .setup("ftruncate: \(error)") }
                c.note("ftruncate(memfd, \(CheckRing.bufferBase)): the buffers' pages are gone")
                let pages = CheckConnection.slotPages(1)
                c.ring.writeDescriptor(4, address: pages.header, length: 16, flags: 1, next: 5)
                c.ring.writeDescriptor(5, address: pages.status, length: 1, flags: 2)
                c.ring.inFlight[4] = 1
                c.make(available: [4])
            },
        ]
    }
}

extension CheckConnection {
    /// GET_ID's chain in an inner table, reached through an INDIRECT descriptor inside the
    /// indirect table that head 0 points at; returns the chain's segments.
    func writeNestedIndirect() -> [CheckRing.Segment] {
        let inner = CheckRing.indirectBase + 0x100
        let segments = blkGetIDChain(slot: 0)
        ring.writeChain(segments, head: 0, table: inner)
        ring.writeDescriptor(0, address: inner, length: UInt32(segments.count * 16), flags: 4, table: CheckRing.indirectBase)
        ring.writeDescriptor(0, address: CheckRing.indirectBase, length: 16, flags: 4)
        return segments
    }
}
