import VhostUser
import VirtioSystem

/// How one ``FuzzCase`` runs: as a ``CheckCase`` of the checker (its process, connection,
/// memory, evidence and clean-up), on a running queue whose unused memory and driver-readable
/// buffers hold canaries (GHT-CHK-16, GHT-CHK-18).
extension FuzzCase {
    /// The rules a fuzz run checks: used ids and lengths, no write into device-readable memory,
    /// no crash and an answer after hostile input.
    static let requirements = ["USD-DEF-02", "USD-DEV-02", "GHT-CHK-18", "GHT-VU-21", "GHT-LIFE-03"]
    static let rule = "used ids name heads made available, used lengths are within the writable bytes, the device writes only "
        + "device-writable buffers and its used ring, and it survives any input and then answers or hangs up"
    /// The byte every unused and driver-readable byte of the checker's memory holds.
    static let canary: UInt8 = 0xC5

    /// The case the checker runs (its name: `fuzz-` and the seed).
    public var checkCase: CheckCase {
        let fuzzCase = self
        return CheckCase("fuzz-\(seed.rawValue)", Self.requirements, device: seed.device, rule: Self.rule) { ctx throws(CheckError) in
            try fuzzCase.run(ctx)
        }
    }

    func run(_ ctx: CheckContext) throws(CheckError) {
        let c = try ctx.connect(sealed: !needsUnsealedMemory)
        let queue: UInt32 = seed == .netTransmit ? 1 : 0
        try c.bringUp(queue: queue)
        // From here on the input is hostile: a closed connection is a defined outcome (GHT-CHK-11).
        do throws(CheckError) {
            try mutate(c, queue: queue)
        } catch {
            if case .closed = error { return }
            throw error
        }
    }

    func mutate(_ c: CheckConnection, queue: UInt32) throws(CheckError) {
        for case .regionScale(let k) in mutations where k > 1 {
            // The hostile-region-beyond-file shape: a table k times the file, then the queue again.
            let region = VhostUserMemoryRegion(guestAddress: 0, size: UInt64(c.memory.size) * UInt64(k),
                                               userAddress: UInt64(c.memory.range.startAddress), mmapOffset: 0)
            guard try c.set(.setMemoryTable(VhostUserMemoryTable(regions: [region])), fds: [c.memory.fd.rawValue]) == 0 else { return }
            try c.startQueue(at: c.ring.usedSeen, queue: queue)
        }
        c.ring.fill(Self.canary, at: CheckRing.indirectBase, count: Int(CheckRing.idleRing - CheckRing.indirectBase))
        if !c.idleReceiveQueue { c.ring.fill(Self.canary, at: CheckRing.idleRing, count: 4096) }
        c.ring.fill(Self.canary, at: CheckRing.bufferBase, count: c.memory.size - Int(CheckRing.bufferBase))
        let head = writeSeed(c)
        var published = head
        var delta: UInt16 = 0
        var truncatedTo = c.memory.size
        for m in mutations {
            switch m {
            case .descriptor(let table, let index, let field, let value): Self.set(c.ring, table, index, field, value)
            case .availHead(let h): published = h
            case .availIndex(let d): delta = d
            case .truncate(let n): truncatedTo = min(c.memory.size, max(n, Int(CheckRing.bufferBase)))
            case .message, .regionScale: break
            }
        }
        // The slots an index jump publishes hold heads of their own (zeroed descriptors: empty
        // chains), so a device that serves them posts ids made available; a jump of the queue
        // size or more breaks VIRTIO 1.2 §2.7.13 first, and then used ids are not judged.
        let size = UInt16(c.ring.size)
        let extra = delta < size ? (0..<delta).map { (published &+ 1 &+ $0) % size } : []
        for (k, h) in extra.enumerated() { c.ring.store(h, at: CheckRing.availRing + 4 + UInt64((Int(c.ring.availIndex) + 1 + k) % c.ring.size) * 2) }
        c.ring.inFlight = [:]
        for h in [published] + extra where h < size { c.ring.inFlight[h] = FuzzMemory.capacity(of: h, in: c) }
        var before = FuzzMemory.Snapshot(c, count: truncatedTo)
        for case .message(let request, let payload, let fds) in mutations {
            try c.sendRaw(request, payload: payload, fds: Array(repeating: c.kick.fd.rawValue, count: fds), label: "request \(request) (fuzzed)")
        }
        if truncatedTo < c.memory.size {
            do { try c.memory.fd.truncate(to: truncatedTo) } catch { throw .setup("ftruncate: \(error)") }
            c.note("ftruncate(memfd, \(truncatedTo))")
        }
        c.make(available: [published])
        if delta != 0 {
            c.ring.publishIndex(c.ring.availIndex &+ delta)
            c.note("avail idx → \(c.ring.availIndex &+ delta) (\(delta) past the request)")
            try? c.kick.signal()
        }
        before.refresh(c, from: CheckRing.availRing, count: 4 + 2 * c.ring.size)   // what the checker itself just wrote
        if delta < size {
            try c.awaitInFlight(milliseconds: min(Int(c.timeoutMilliseconds), 300))
        } else {
            SystemClock.sleep(milliseconds: 100)
        }
        if let damage = before.damage(in: c, canaryChecked: !movesRingOrMemory) {
            throw .violation("GHT-CHK-18: the back-end wrote device-readable memory: \(damage)\n\(c.evidence)")
        }
        try c.answersAfterReplies()
    }

    /// Whether a message mutation may legitimately move what the device writes (the memory
    /// table, a ring's size, addresses or base): the canaries are then not checked.
    var movesRingOrMemory: Bool {
        mutations.contains { m in
            guard case .message(let r, _, _) = m else { return false }
            return [5, 8, 9, 10, 37, 38].contains(r)
        }
    }

    /// Writes the seed request as its check case does; returns its head.
    func writeSeed(_ c: CheckConnection) -> UInt16 {
        typealias T = CheckConnection.BlockType
        switch seed {
        case .getID: c.ring.writeChain(c.blkGetIDChain(slot: 0), head: 0)
        case .read: c.ring.writeChain(c.blockChain(slot: 0, type: T.read, sector: 0, inLength: 512), head: 0)
        case .write:
            let pattern = (0..<512).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }
            c.ring.writeChain(c.blockChain(slot: 0, type: T.write, sector: 1, out: pattern), head: 0)
        case .headerSplit: c.ring.writeChain(c.blockChain(slot: 0, type: T.read, sector: 0, inLength: 512, headerCuts: [4, 5]), head: 0)
        case .indirect:
            let segments = c.blkGetIDChain(slot: 0)
            c.ring.writeChain(segments, head: 0, table: CheckRing.indirectBase)
            c.ring.writeDescriptor(0, address: CheckRing.indirectBase, length: UInt32(segments.count * 16), flags: 4)
        case .nestedIndirect: _ = c.writeNestedIndirect()
        case .netTransmit:
            c.ring.write(CheckConnection.transmitFrame, at: CheckRing.page(0))
            c.ring.writeChain([.init(address: CheckRing.page(0), length: 12, writable: false),
                               .init(address: CheckRing.page(0) + 12, length: 60, writable: false)], head: 0)
        }
        return 0
    }

    static func set(_ ring: CheckRing, _ table: Table, _ index: Int, _ field: Field, _ value: UInt64) {
        let at = (table == .main ? CheckRing.descriptorTable : CheckRing.indirectBase) + UInt64(index % 256) * 16
        switch field {
        case .addr: ring.store(value, at: at)
        case .len: ring.store(UInt32(truncatingIfNeeded: value), at: at + 8)
        case .flags: ring.store(UInt16(truncatingIfNeeded: value), at: at + 12)
        case .next: ring.store(UInt16(truncatingIfNeeded: value), at: at + 14)
        }
    }
}

extension CheckConnection {
    /// Waits up to `milliseconds` for every head in flight to be used, checking each used
    /// element; a back-end that breaks the queue instead leaves them in flight, which is fine.
    func awaitInFlight(milliseconds: Int) throws(CheckError) {
        let deadline = Timeout(milliseconds: Int32(milliseconds))
        while !ring.inFlight.isEmpty && deadline.remainingMilliseconds() > 0 {
            _ = try usedWithin(milliseconds: 2)
        }
        _ = try usedWithin(milliseconds: 20)   // anything used beyond what was in flight
    }

    /// Like ``answersOrClosed()``, after fuzzed messages whose replies may come first: the
    /// answer to GET_FEATURES is the first reply of request 1 among the next few messages.
    func answersAfterReplies() throws(CheckError) {
        do throws(CheckError) {
            try send(.getFeatures)
            for _ in 0..<8 {
                if try receive(answering: "the reply to getFeatures").frame.header.request == VhostUserRequest.getFeatures.rawValue { return }
            }
            throw .violation("GHT-VU-18: no reply to GET_FEATURES among the next 8 messages\n\(evidence)")
        } catch {
            if case .closed = error { return }
            throw error
        }
    }
}
