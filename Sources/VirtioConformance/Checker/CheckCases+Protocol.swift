import VirtioCore
import VhostUser

/// The vhost-user handshake, each message's reply rules, feature negotiation and the ring's
/// stop and restart (vhost-user.rst; Spec/vhost-user.md GHT-VU-xx; VIRTIO 1.2 §2.2).
extension CheckCase {
    static var protocolCases: [CheckCase] {
        [
            CheckCase("vu-get-features", ["GHT-VU-18", "FEAT-DEV-04"],
                      rule: "GET_FEATURES is answered by a reply (REPLY flag, version 1, same request) of 8 bytes; the device offers VERSION_1 and no reserved bit") { ctx throws(CheckError) in
                let c = try ctx.connect()
                try c.handshake()
                guard c.offered.contains(.version1) else {
                    throw .violation("VERSION_1 (bit 32) is not offered: features 0x\(String(c.offered.rawValue, radix: 16))\n\(c.evidence)")
                }
            },
            CheckCase("vu-reply-ack", ["GHT-VU-18"],
                      rule: "with REPLY_ACK negotiated, a request carrying NEED_REPLY is answered by a u64 ack, 0 for success") { ctx throws(CheckError) in
                let c = try ctx.connect()
                try c.handshake()
                guard c.protocolFeatures.contains(.replyAck) else { throw .notApplicable("REPLY_ACK not offered") }
                let status = try c.set(.setFeatures(c.offered.intersection([.version1, .vhostUserProtocolFeatures])))
                guard status == 0 else { throw .violation("SET_FEATURES of offered bits was refused: ack \(status)\n\(c.evidence)") }
            },
            CheckCase("vu-queue-num", ["GHT-VU-18"],
                      rule: "with MQ negotiated, GET_QUEUE_NUM answers a u64 of at least 1") { ctx throws(CheckError) in
                let c = try ctx.connect()
                try c.handshake()
                guard c.protocolFeatures.contains(.multiQueue) else { throw .notApplicable("MQ not offered") }
                try c.send(.getQueueNum)
                let n = try c.u64Reply(to: .getQueueNum)
                guard n >= 1 else { throw .violation("GET_QUEUE_NUM answered \(n)\n\(c.evidence)") }
            },
            CheckCase("vu-bring-up", ["GHT-VU-24"], device: .blk,
                      rule: "a queue started by SET_VRING_KICK (and SET_VRING_ENABLE 1 with protocol features) processes what is made available") { ctx throws(CheckError) in
                let c = try ctx.running()
                _ = try c.blkGetID(slot: 0)
            },
            CheckCase("vu-get-vring-base-stops", ["GHT-QST-04", "GHT-EMB-07"], device: .blk,
                      rule: "GET_VRING_BASE stops the ring and answers the next available index it would read; a stopped ring uses nothing more") { ctx throws(CheckError) in
                let c = try ctx.running()
                for i in 0..<3 { _ = try c.blkGetID(slot: i) }
                let base = try c.stopQueue()
                guard base == 3 else { throw .violation("GET_VRING_BASE answered \(base) after 3 chains were used (3 expected)\n\(c.evidence)") }
                c.ring.writeChain(c.blkGetIDChain(slot: 0), head: 0)
                c.make(available: [0])
                let used = try c.usedWithin(milliseconds: 300)
                guard used == 0 else { throw .violation("a stopped ring used \(used) chain(s) made available after GET_VRING_BASE\n\(c.evidence)") }
            },
            CheckCase("vu-restart-at-base", ["GHT-QST-04"], device: .blk,
                      rule: "a ring started again with SET_VRING_BASE at the value GET_VRING_BASE answered continues from there") { ctx throws(CheckError) in
                let c = try ctx.running()
                for i in 0..<2 { _ = try c.blkGetID(slot: i) }
                let base = try c.stopQueue()
                try c.startQueue(at: base)
                _ = try c.blkGetID(slot: 0)
                guard c.ring.usedIndex == base &+ 1 else {
                    throw .violation("after a restart at \(base) the used index is \(c.ring.usedIndex), \(base &+ 1) expected\n\(c.evidence)")
                }
            },
            CheckCase("vu-reconnect", ["GHT-VU-21"], device: .blk,
                      rule: "a front-end gone mid-stream (chains in flight) costs only its session: the back-end keeps running and serves the next connection") { ctx throws(CheckError) in
                let first = try ctx.running()
                for slot in 0..<4 { first.ring.writeChain(first.blkGetIDChain(slot: slot), head: slot * 4) }
                first.make(available: [0, 4, 8, 12])
                first.close()
                let second = try ctx.running()
                _ = try second.blkGetID(slot: 0)
            },
            CheckCase("feat-subset", ["FEAT-DEV-02"], device: .blk,
                      rule: "the device accepts any valid subset of the features it offered (here: VERSION_1 alone)") { ctx throws(CheckError) in
                let c = try ctx.connect()
                try c.bringUp(accept: [.version1], deviceBits: 0)
                _ = try c.blkGetID(slot: 0)
            },
        ]
    }
}
