import VirtioCore
import VhostUser

/// virtio-net's device rules (VIRTIO 1.2 §5.1; Spec/devices.md GHT-NET-xx): the MAC in the
/// configuration space, and a transmit buffer (the 12-byte header of VERSION_1, then a frame).
extension CheckCase {
    static var netCases: [CheckCase] {
        [
            CheckCase("net-mac-config", ["GHT-NET-05"], device: .net,
                      rule: "with MAC offered, the configuration space's first 6 bytes are the device's own unicast address") { ctx throws(CheckError) in
                let c = try ctx.connect()
                try c.handshake()
                guard c.offered.rawValue & (1 << 5) != 0 else { throw .notApplicable("MAC not offered") }
                guard let mac = try c.configBytes(offset: 0, count: 6) else { throw .notApplicable("CONFIG not offered") }
                guard mac[0] & 1 == 0, mac.contains(where: { $0 != 0 }) else {
                    throw .violation("the configured MAC \(CheckConnection.hex(mac)) is a group or zero address\n\(c.evidence)")
                }
            },
            CheckCase("net-tx-frame", ["GHT-NET-01", "USD-DEF-02"], device: .net,
                      rule: "a transmit buffer (header, then a 60-byte frame) completes, with used length 0: it has no device-writable part") { ctx throws(CheckError) in
                let c = try ctx.connect()
                try c.bringUp(queue: 1)
                let page = CheckRing.page(0)
                c.ring.write(CheckConnection.transmitFrame, at: page)
                c.ring.writeChain([.init(address: page, length: 12, writable: false), .init(address: page + 12, length: 60, writable: false)], head: 0)
                c.make(available: [0])
                let used = try c.waitUsed(1, what: "a transmitted frame")
                guard used[0].length == 0 else { throw .violation("a transmit buffer completed with used length \(used[0].length)\n\(c.evidence)") }
            },
        ]
    }
}

extension CheckConnection {
    /// A transmit buffer: the 12-byte header (all zero), then a 60-byte broadcast ARP frame
    /// from a locally administered address.
    static var transmitFrame: [UInt8] {
        var frame = [UInt8](repeating: 0, count: 12 + 60)
        for i in 0..<6 { frame[12 + i] = 0xff }            // broadcast destination
        frame[12 + 6] = 0x02                                // a locally administered source
        frame[12 + 12] = 0x08; frame[12 + 13] = 0x06        // ARP
        return frame
    }

    /// Queue 0 (receive) started with no buffers, its ring in the page at ``CheckRing/idleRing``,
    /// before the transmit queue: a net back-end may start its queues only once both of the
    /// first pair are set up (DPDK's vhost library waits for two), GHT-CHK-21.
    func startIdleReceiveQueue() throws(CheckError) {
        let user = UInt64(memory.range.startAddress) + CheckRing.idleRing
        ring.fill(0, at: CheckRing.idleRing, count: 4096)
        try require(.setVringNum(VhostUserVringState(index: 0, num: UInt32(ring.size))))
        try require(.setVringBase(VhostUserVringState(index: 0, num: 0)))
        try require(.setVringAddress(VhostUserVringAddress(index: 0, descriptor: user, used: user + 0x400, available: user + 0x200)))
        try require(.setVringCall(VhostUserVringFile(index: 0)), fds: [call.fd.rawValue])
        try require(.setVringKick(VhostUserVringFile(index: 0)), fds: [kick.fd.rawValue])
        if offered.contains(.vhostUserProtocolFeatures) { try require(.setVringEnable(VhostUserVringState(index: 0, num: 1))) }
        idleReceiveQueue = true
    }

    /// `count` bytes of the configuration space at `offset` (GET_CONFIG); nil without CONFIG.
    func configBytes(offset: UInt32, count: Int) throws(CheckError) -> [UInt8]? {
        guard protocolFeatures.contains(.config) else { return nil }
        try send(.getConfig(.request(offset: offset, size: count)))
        let r = try receive(answering: "the reply to GET_CONFIG")
        guard r.frame.payload.count == 12 + count else { return nil }
        return Array(r.frame.payload[12...])
    }
}
