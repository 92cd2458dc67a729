import VirtioCore

/// The split ring's rules from the device's side (VIRTIO 1.2 §2.7), checked on virtio-blk
/// requests: used ids and lengths, notifications with and without EVENT_IDX, indirect tables,
/// the wrap of the 16-bit indices.
extension CheckCase {
    static var ringCases: [CheckCase] {
        [
            CheckCase("ring-used-id-len", ["USD-DEF-02", "USD-DEV-02"], device: .blk,
                      rule: "a used element's id is the head of a chain made available, and its len at most the chain's device-writable bytes") { ctx throws(CheckError) in
                let c = try ctx.running()
                // Eight requests at once, with writable rooms of 21, 9, 2 and 1 byte.
                let heads = (0..<8).map { slot in
                    let room = [20, 8, 1, 0][slot % 4]
                    let segments = c.blockChain(slot: slot, type: CheckConnection.BlockType.getID, sector: 0, inLength: room)
                    c.ring.writeChain(segments, head: slot * 4)
                    return UInt16(slot * 4)
                }
                c.make(available: heads)
                try c.waitUsed(8, what: "eight GET_ID requests")
            },
            CheckCase("ring-notify-flags", ["UNS-DEV-01"], device: .blk,
                      rule: "without EVENT_IDX the device must notify after adding a used element when avail.flags is 0, and should not when it is 1 (NO_INTERRUPT)") { ctx throws(CheckError) in
                let c = try ctx.running(accept: [.version1])
                _ = try? c.call.drain()
                _ = try c.blkGetID(slot: 0)
                guard (try? c.call.wait(timeoutMilliseconds: 200)) == true else {
                    throw .violation("no used-buffer notification with avail.flags 0\n\(c.evidence)")
                }
                _ = try? c.call.drain()
                c.ring.availFlags = 1
                _ = try c.blkGetID(slot: 1)
                if (try? c.call.wait(timeoutMilliseconds: 100)) == true {
                    throw .violation("a used-buffer notification although avail.flags is NO_INTERRUPT (a SHOULD NOT)\n\(c.evidence)")
                }
            },
            CheckCase("ring-event-idx", ["UNS-DEV-02"], device: .blk,
                      rule: "with EVENT_IDX the device must notify when the used position it filled equals used_event, and otherwise should not") { ctx throws(CheckError) in
                let c = try ctx.connect()
                try c.bringUp()
                guard c.negotiated.contains(.eventIndex) else { throw .notApplicable("EVENT_IDX not offered") }
                c.ring.usedEvent = 0
                _ = try? c.call.drain()
                _ = try c.blkGetID(slot: 0)
                guard (try? c.call.wait(timeoutMilliseconds: 200)) == true else {
                    throw .violation("no notification although used_event (0) named the used position filled\n\(c.evidence)")
                }
                _ = try? c.call.drain()
                c.ring.usedEvent = 100
                c.ring.availFlags = 0
                _ = try c.blkGetID(slot: 1)
                if (try? c.call.wait(timeoutMilliseconds: 100)) == true {
                    throw .violation("a notification although used_event is 100 and the used index moved 1 → 2 (a SHOULD NOT)\n\(c.evidence)")
                }
            },
            CheckCase("ring-indirect", ["IND-DEV-02", "IND-DEF-01"], device: .blk,
                      rule: "with INDIRECT_DESC the device accepts a chain whose descriptors are in an indirect table") { ctx throws(CheckError) in
                let c = try ctx.running()
                guard c.negotiated.contains(.indirectDescriptors) else { throw .notApplicable("INDIRECT_DESC not offered") }
                let segments = c.blockChain(slot: 0, type: CheckConnection.BlockType.getID, sector: 0, inLength: 20, headerCuts: [4])
                c.ring.writeChain(segments, head: 0, table: CheckRing.indirectBase)
                c.ring.writeDescriptor(0, address: CheckRing.indirectBase, length: UInt32(segments.count * 16), flags: 4)
                c.ring.inFlight[0] = CheckRing.capacity(segments)
                c.make(available: [0])
                try c.waitUsed(1, what: "a GET_ID request through an indirect table")
                let status = c.reply(slot: 0, inLength: 20, length: 0).status
                guard status == 0 || status == 2 else { throw .violation("status \(status) for an indirect GET_ID\n\(c.evidence)") }
            },
            CheckCase("ring-index-wrap", ["AVL-DEF-02"], device: .blk,
                      rule: "the available and used indices are free-running 16-bit counters that wrap at 65536") { ctx throws(CheckError) in
                let c = try ctx.connect()
                try c.bringUp(startAt: 65530)
                for _ in 0..<12 { _ = try c.blkGetID(slot: 0) }
                guard c.ring.usedIndex == 6 else { throw .violation("used index \(c.ring.usedIndex) after 12 chains from 65530 (6 expected)\n\(c.evidence)") }
            },
        ]
    }
}
