import VirtioCore
import VirtioSystem
import VhostUser

/// The front-end's start sequence as QEMU sends it (vhost-user.rst "Starting the device"), and
/// the waits on the used ring, checked element by element (GHT-CHK-03).
extension CheckConnection {
    /// The virtio features the checker accepts when offered: the ring's and the transport's,
    /// plus every device-specific bit below 24 (what a device type may define).
    static let wanted: VirtioFeatures = [.version1, .indirectDescriptors, .eventIndex]

    /// SET_OWNER, GET_FEATURES, GET/SET_PROTOCOL_FEATURES, SET_FEATURES (`accept` of what is
    /// offered), then the memory table, queue 0 and its enable, and DRIVER_OK when STATUS is there.
    func bringUp(accept: VirtioFeatures = CheckConnection.wanted, deviceBits: UInt64 = (1 << 24) - 1,
                 startAt base: UInt16 = 0, queue: UInt32 = 0, memoryTable: [VhostUserMemoryRegion]? = nil) throws(CheckError) {
        try handshake()
        let device = VirtioFeatures(rawValue: offered.rawValue & deviceBits)
        negotiated = offered.intersection(accept.union(device).union(.vhostUserProtocolFeatures))
        try require(.setFeatures(negotiated))
        if protocolFeatures.contains(.status) { try require(.setStatus([.acknowledge, .driver, .featuresOK])) }
        try shareMemory(memoryTable)
        if queue == 1 { try startIdleReceiveQueue() }
        try startQueue(at: base, queue: queue)
        if protocolFeatures.contains(.status) { try require(.setStatus([.acknowledge, .driver, .featuresOK, .driverOK])) }
    }

    /// SET_OWNER, GET_FEATURES and, when offered, the protocol features.
    func handshake() throws(CheckError) {
        try send(.setOwner)
        try send(.getFeatures)
        offered = VirtioFeatures(rawValue: try u64Reply(to: .getFeatures))
        if offered.contains(.vhostUserProtocolFeatures) {
            try send(.getProtocolFeatures)
            offeredProtocol = VhostUserProtocolFeatures(rawValue: try u64Reply(to: .getProtocolFeatures))
            protocolFeatures = offeredProtocol.intersection([.replyAck, .config, .status, .multiQueue, .configureMemorySlots])
            try send(.setProtocolFeatures(protocolFeatures))
        }
    }

    /// SET_MEM_TABLE: one region, guest-physical 0 = the memfd from offset 0, or `table` as given
    /// (every region then carries the same memfd).
    func shareMemory(_ table: [VhostUserMemoryRegion]? = nil) throws(CheckError) {
        let regions = table ?? [VhostUserMemoryRegion(guestAddress: 0, size: UInt64(memory.size),
                                                      userAddress: UInt64(memory.range.startAddress), mmapOffset: 0)]
        try require(.setMemoryTable(VhostUserMemoryTable(regions: regions)), fds: regions.map { _ in memory.fd.rawValue })
    }

    /// SET_VRING_NUM, SET_VRING_BASE, SET_VRING_ADDR, SET_VRING_CALL, SET_VRING_KICK and
    /// SET_VRING_ENABLE for `queue` (the checker's one ring), in QEMU's order.
    func startQueue(at base: UInt16, queue: UInt32 = 0) throws(CheckError) {
        ring.start(at: base)
        try require(.setVringNum(VhostUserVringState(index: queue, num: UInt32(ring.size))))
        try require(.setVringBase(VhostUserVringState(index: queue, num: UInt32(base))))
        let user = UInt64(memory.range.startAddress)
        try require(.setVringAddress(VhostUserVringAddress(index: queue, descriptor: user + CheckRing.descriptorTable,
                                                           used: user + CheckRing.usedRing, available: user + CheckRing.availRing)))
        try require(.setVringCall(VhostUserVringFile(index: UInt8(queue))), fds: [call.fd.rawValue])
        try require(.setVringKick(VhostUserVringFile(index: UInt8(queue))), fds: [kick.fd.rawValue])
        if protocolFeatures.contains(.replyAck) || offered.contains(.vhostUserProtocolFeatures) {
            try require(.setVringEnable(VhostUserVringState(index: queue, num: 1)))
        }
    }

    /// GET_VRING_BASE of queue 0: stops it and returns the next available index it would read.
    func stopQueue() throws(CheckError) -> UInt16 {
        try send(.getVringBase(VhostUserVringState(index: 0, num: 0)))
        let r = try receive(answering: "the reply to GET_VRING_BASE")
        guard r.frame.header.request == VhostUserRequest.getVringBase.rawValue, r.frame.payload.count == 8 else {
            throw .violation("GHT-VU-18: GET_VRING_BASE answered with request \(r.frame.header.request), \(r.frame.payload.count) bytes\n\(evidence)")
        }
        return UInt16(r.frame.payload[4]) | UInt16(r.frame.payload[5]) << 8
    }

    /// Publishes `heads` and kicks.
    func make(available heads: [UInt16]) {
        for head in heads { noteChain(head) }
        ring.publish(heads)
        note("avail idx → \(ring.availIndex) (heads \(heads))")
        try? kick.signal()
    }

    /// The descriptors of the chain at `head` as the back-end will read them (at most 6).
    func noteChain(_ head: UInt16) {
        var index = Int(head)
        for _ in 0..<6 where index < ring.size {
            let at = CheckRing.descriptorTable + UInt64(index) * 16
            let flags = ring.load(UInt16.self, at: at + 12), next = ring.load(UInt16.self, at: at + 14)
            note("  desc[\(index)] addr 0x\(String(ring.load(UInt64.self, at: at), radix: 16)) len \(ring.load(UInt32.self, at: at + 8)) flags \(flags) next \(next)")
            guard flags & 1 != 0 else { break }
            index = Int(next)
        }
    }

    /// Waits until `count` more used elements are published, and checks each: its id is a head
    /// made available and not yet used (USD-DEF-02), its length at most that chain's writable
    /// capacity (USD-DEV-02, GHT-CHK-03).
    @discardableResult
    func waitUsed(_ count: Int, what: String) throws(CheckError) -> [(id: UInt32, length: UInt32)] {
        let deadline = Timeout(milliseconds: timeoutMilliseconds)
        var elements: [(id: UInt32, length: UInt32)] = []
        while elements.count < count {
            let index = ring.usedIndex
            while ring.usedSeen != index && elements.count < count {
                let e = ring.usedElement(ring.usedSeen)
                note("← used[\(ring.usedSeen)] id \(e.id) len \(e.length)")
                try checkUsed(e)
                elements.append(e)
                ring.usedSeen &+= 1
            }
            if elements.count == count { break }
            if deadline.remainingMilliseconds() == 0 {
                throw .hang("\(what): \(elements.count) of \(count) used elements within \(timeoutMilliseconds) ms (used idx \(index))")
            }
            SystemClock.sleep(milliseconds: 1)
        }
        return elements
    }

    /// Checks one used element against the chains in flight (and forgets its head).
    func checkUsed(_ e: (id: UInt32, length: UInt32)) throws(CheckError) {
        guard e.id < UInt32(ring.size), let capacity = ring.inFlight[UInt16(e.id)] else {
            throw .violation("USD-DEF-02: used element id \(e.id) is not a head in flight, made available and not yet used (in flight: \(ring.inFlight.keys.sorted()))\n\(evidence)")
        }
        guard e.length <= capacity else {
            throw .violation("USD-DEV-02: used length \(e.length) of head \(e.id) exceeds the chain's writable capacity \(capacity)\n\(evidence)")
        }
        ring.inFlight[UInt16(e.id)] = nil
    }

    /// Used elements published within `milliseconds`, checked; none is fine.
    func usedWithin(milliseconds: Int) throws(CheckError) -> Int {
        SystemClock.sleep(milliseconds: milliseconds)
        var n = 0
        let index = ring.usedIndex
        while ring.usedSeen != index && n < ring.size {
            let e = ring.usedElement(ring.usedSeen)
            note("← used[\(ring.usedSeen)] id \(e.id) len \(e.length)")
            try checkUsed(e)
            ring.usedSeen &+= 1
            n += 1
        }
        return n
    }

    /// Whether the back-end is still there: GET_FEATURES answered, or the connection closed (a
    /// defined outcome of hostile input). Throws ``CheckError/hang`` when neither happens.
    func answersOrClosed() throws(CheckError) -> Bool {
        do {
            try send(.getFeatures)
            _ = try u64Reply(to: .getFeatures)
            return true
        } catch {
            if case .closed = error { return false }
            throw error
        }
    }
}
