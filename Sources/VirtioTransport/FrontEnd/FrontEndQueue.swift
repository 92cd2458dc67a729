import VirtioCore
import VirtioGrants
import VirtioSystem
import VhostUser

/// A completed request: its token and the bytes the device wrote.
public struct Completion: Sendable {
    public let token: UInt64
    public let reply: [UInt8]
}

/// One queue of a ``FrontEnd``: its ring, indirect tables and request and reply buffers live in
/// the shared pool (granted once, persistently: the descriptor table, available ring, indirect
/// tables and request buffers read-only and in the pool's sealed readable file, the used ring
/// and reply buffers writable), and its kick, call and error doorbells are eventfds.
///
/// A request is copied into its slot and a reply copied out of its slot into memory the
/// back-end cannot reach before anyone reads it (Spec/hostile-peers.md GHT-HBE-02). The slots
/// stay granted, so what they held was the back-end's to read; with
/// ``FrontEndConfiguration/scrubsCompletedSlots`` both are zeroed after each completion too, so
/// a slot not in flight holds nothing of the guest's (GHT-HBE-06).
public final class FrontEndQueue: @unchecked Sendable {
    unowned let frontEnd: FrontEnd
    public let index: Int
    let size: Int
    let slots: Int
    let requestPages: Int
    let replyPages: Int
    let descriptors: PoolRun, avail: PoolRun, used: PoolRun, tables: PoolRun
    let requests: PoolRun, replies: PoolRun
    let kick: Doorbell, call: Doorbell, err: Doorbell
    /// Waits on the call and error doorbells and the control socket (whose closing is the
    /// back-end's death).
    let poller: Poller
    var events: [PollEvent] = []
    var driver: FrontEndRing?
    var freeSlots: [Int] = []
    /// Per slot, the bytes of its request and the reply capacity offered: what to zero, and
    /// the most reply bytes to believe.
    var slotLengths: [(request: Int, reply: Int)]
    /// The private copy of a reply (one slot's worth), which the back-end cannot change under
    /// the reader (GHT-HBE-02).
    let replyCopy: UnsafeMutableRawBufferPointer
    let scrubsSlots: Bool
    var slotOfToken: [UInt64: Int] = [:]
    var nextToken: UInt64 = 1
    /// Held around every use of the driver state (add, publish, reap) and by a reconnection,
    /// which takes back what the dead back-end completed and reads where the queue stands
    /// while the queue's users go on from their own threads (GHT-RCN-03). Uncontended but for
    /// a reconnection.
    let lock = Locked<Void>(())
    /// Completions taken back by a reconnection, handed to the caller before the ring's next
    /// ones (under ``lock``).
    var pending: [(token: UInt64, reply: [UInt8])] = []

    /// Requests completed, and bytes sent and received, since the queue was set up (read under
    /// ``lock``: a reconnection on another thread may take completions back meanwhile).
    public var completed: Int { lock.withLock { _ in completedCount } }
    public var bytesSent: Int { lock.withLock { _ in sentCount } }
    public var bytesReceived: Int { lock.withLock { _ in receivedCount } }
    private var completedCount = 0
    private var sentCount = 0
    private var receivedCount = 0
    /// Whether ``pollCompletions(_:)`` turned used-buffer notifications off.
    private var usedNotificationsSuppressed = false

    static let tableEntries = 8

    /// Pages one queue takes in the pool's readable file (what the device only reads) and in
    /// its writable file.
    static func pagesNeeded(_ c: FrontEndConfiguration) -> (readable: Int, writable: Int) {
        let n = c.queueSize, slots = min(c.maxOutstanding, c.queueSize)
        func pages(_ bytes: Int) -> Int { (bytes + GrantHandle.pageSize - 1) / GrantHandle.pageSize }
        // A packed ring's descriptors are written by the device (used descriptors).
        let descriptors = pages(16 * n), packed = c.ring == .packed
        let readable = (packed ? 0 : descriptors) + pages(6 + 2 * n) + pages(n * tableEntries * 16) + slots * pages(c.maxRequestSize)
        let writable = (packed ? descriptors : 0) + pages(6 + 8 * n) + slots * pages(c.maxReplySize)
        return (readable, writable)
    }

    init(frontEnd: FrontEnd, index: Int) throws(FrontEndError) {
        self.frontEnd = frontEnd
        self.index = index
        let c = frontEnd.configuration
        size = c.queueSize
        slots = min(c.maxOutstanding, c.queueSize)
        func pages(_ bytes: Int) -> Int { (bytes + GrantHandle.pageSize - 1) / GrantHandle.pageSize }
        requestPages = pages(c.maxRequestSize)
        replyPages = pages(c.maxReplySize)
        slotLengths = Array(repeating: (0, 0), count: slots)
        replyCopy = .allocate(byteCount: replyPages * GrantHandle.pageSize, alignment: 64)
        scrubsSlots = c.scrubsCompletedSlots
        // A packed ring's descriptors are written by the device too (used descriptors).
        descriptors = try frontEnd.allocate(pages: pages(16 * size), readOnly: c.ring == .split)
        avail = try frontEnd.allocate(pages: pages(6 + 2 * size), readOnly: true)
        used = try frontEnd.allocate(pages: pages(6 + 8 * size), readOnly: false)
        tables = try frontEnd.allocate(pages: pages(size * Self.tableEntries * 16), readOnly: true)
        requests = try frontEnd.allocate(pages: slots * requestPages, readOnly: true)
        replies = try frontEnd.allocate(pages: slots * replyPages, readOnly: false)
        do {
            kick = try Doorbell()
            call = try Doorbell()
            err = try Doorbell()
            poller = try Poller()
            try poller.add(call.fd, token: 0)
            try poller.add(err.fd, token: 1)
            try poller.add(frontEnd.channel.socket.fd, token: 2)
        } catch {
            throw .system(error)
        }
    }

    deinit { replyCopy.deallocate() }

    /// Sets the queue up (again): zeroed rings, the vring messages, enabled (QRST-DRV-02).
    func configure() throws(FrontEndError) {
        try lock.withLock { _ throws(FrontEndError) in try makeRing() }
        // Packed: slot 0 with wrap counter 1 on both sides (GHT-PKD-08).
        try sendRing(base: frontEnd.features.contains(.ringPacked) ? 0x8000_8000 : 0)
    }

    /// Fresh, empty driver rings over the queue's areas.
    private func makeRing() throws(FrontEndError) {
        let pool = IndirectTablePool(block: tables.host, deviceAddress: tables.deviceAddress(0), tableCount: size, entriesPerTable: Self.tableEntries)
        let packed = frontEnd.features.contains(.ringPacked)
        // The embedder's queue size, checked here rather than trusted (TRN-M-04): a split ring's
        // is a power of 2 up to 32768, a packed ring's 1...32768.
        let splitLayout = packed ? nil : SplitRingLayout(queueSize: size)
        let packedLayout = packed ? PackedRingLayout(queueSize: size) : nil
        guard splitLayout != nil || packedLayout != nil else {
            throw .negotiation("queue size \(size) is not valid for a \(packed ? "packed" : "split") ring")
        }
        do {
            if let packedLayout {
                // The avail and used runs hold the driver and device event-suppression areas.
                let ring = try PackedRing(layout: packedLayout, descriptorRing: descriptors.host,
                                          driverEventArea: avail.host, deviceEventArea: used.host)
                driver = .packed(PackedDriverQueue(ring: ring, features: frontEnd.features, indirectTables: pool))
            } else if let splitLayout {
                let ring = try SplitRing(layout: splitLayout, descriptorTable: descriptors.host,
                                         availRing: avail.host, usedRing: used.host)
                driver = .split(SplitDriverQueue(ring: ring, features: frontEnd.features, indirectTables: pool))
            }
        } catch {
            throw .protocolViolation("ring layout: \(error)")
        }
        freeSlots = Array((0..<slots).reversed())
        slotOfToken = [:]
        pending = []
    }

    /// The vring messages: size, addresses, `base` (SET_VRING_BASE), kick, call, err, enable.
    func sendRing(base: UInt32) throws(FrontEndError) {
        let grants = frontEnd.configuration.mode == .grants
        let address = { (run: PoolRun) in grants ? run.deviceAddress(0) : run.userAddress(0) }
        let i = UInt32(index)
        try frontEnd.request(.setVringNum(VhostUserVringState(index: i, num: UInt32(size))))
        try frontEnd.request(.setVringAddress(VhostUserVringAddress(index: i, flags: [], descriptor: address(descriptors),
                                                                     used: address(used), available: address(avail), log: 0)))
        try frontEnd.request(.setVringBase(VhostUserVringState(index: i, num: base)))
        try frontEnd.request(.setVringKick(VhostUserVringFile(index: UInt8(index), hasFileDescriptor: true)), fds: [kick.fd.rawValue])
        try frontEnd.request(.setVringCall(VhostUserVringFile(index: UInt8(index), hasFileDescriptor: true)), fds: [call.fd.rawValue])
        try frontEnd.request(.setVringErr(VhostUserVringFile(index: UInt8(index), hasFileDescriptor: true)), fds: [err.fd.rawValue])
        try frontEnd.request(.setVringEnable(VhostUserVringState(index: i, num: 1)))
    }

    /// Requests that may still be submitted before completions free their buffers.
    public var freeCount: Int { lock.withLock { _ in freeSlots.count } }

    /// Submits a request: copies `request` into a request buffer (split into `parts` readable
    /// segments, to exercise multi-descriptor and indirect chains) and offers a reply buffer of
    /// `replyCapacity` bytes. Call ``publish()`` to expose what was submitted.
    ///
    /// - Returns: the token its ``Completion`` will carry.
    @discardableResult
    public func submit(_ request: [UInt8], replyCapacity: Int, parts: Int = 1) throws(FrontEndError) -> UInt64 {
        let result = request.withUnsafeBytes { bytes in Result { () throws(FrontEndError) in try submit(copying: bytes, replyCapacity: replyCapacity, parts: parts) } }
        return try result.get()
    }

    /// ``submit(_:replyCapacity:parts:)`` from bytes the caller holds.
    @discardableResult
    public func submit(copying request: UnsafeRawBufferPointer, replyCapacity: Int, parts: Int = 1) throws(FrontEndError) -> UInt64 {
        guard request.count <= requestPages * GrantHandle.pageSize, replyCapacity <= replyPages * GrantHandle.pageSize else {
            throw .exhausted("request or reply larger than the configured buffers")
        }
        return try lock.withLock { _ throws(FrontEndError) in try submit(locked: request, replyCapacity: replyCapacity, parts: parts) }
    }

    private func submit(locked request: UnsafeRawBufferPointer, replyCapacity: Int, parts: Int) throws(FrontEndError) -> UInt64 {
        guard let slot = freeSlots.popLast() else { throw .exhausted("\(slots) requests already in flight") }
        let base = slot * requestPages * GrantHandle.pageSize
        _ = requests.host.copyBytes(to: base, from: request)
        slotLengths[slot] = (request.count, replyCapacity)
        // An empty request has no readable segment at all (a receive buffer).
        let n = min(max(1, parts), request.count)
        var readable: [BufferSegment] = []
        readable.reserveCapacity(n)
        var at = 0
        for p in 0..<n {
            let end = p == n - 1 ? request.count : at + request.count / n
            readable.append(BufferSegment(address: requests.deviceAddress(base + at), length: UInt32(end - at)))
            at = end
        }
        let writable = replyCapacity == 0 ? []
            : [BufferSegment(address: replies.deviceAddress(slot * replyPages * GrantHandle.pageSize), length: UInt32(replyCapacity))]
        do {
            let token = try add(readable: readable, writable: writable)
            slotOfToken[token] = slot
            sentCount += request.count
            return token
        } catch {
            freeSlots.append(slot)
            throw error
        }
    }

    /// Submits a chain of the caller's own segments (device-visible addresses, any of them):
    /// what a hostile or buggy driver would do. The reply, if any, is not copied back.
    @discardableResult
    public func submit(readable: [BufferSegment], writable: [BufferSegment]) throws(FrontEndError) -> UInt64 {
        try lock.withLock { _ throws(FrontEndError) in try add(readable: readable, writable: writable) }
    }

    private func add(readable: [BufferSegment], writable: [BufferSegment]) throws(FrontEndError) -> UInt64 {
        let token = nextToken
        do {
            try driver!.add(readable: readable, writable: writable, token: token)
        } catch {
            throw .queue(error)
        }
        nextToken += 1
        return token
    }

    /// Exposes what was submitted and kicks the back-end if it wants a notification.
    public func publish() throws(FrontEndError) {
        let kickNeeded = lock.withLock { _ in
            driver!.publish()
            return driver!.kickNeeded()
        }
        if kickNeeded {
            do { try kick.signal() } catch { throw .system(error) }
        }
    }

    /// Waits until at least one request completes and returns every completion available.
    /// A back-end that broke the queue, disconnected or stays silent past the timeout is an
    /// error, never a hang.
    public func waitForCompletions(timeoutMilliseconds: Int32? = nil) throws(FrontEndError) -> [Completion] {
        var done: [Completion] = []
        try waitForCompletions(timeoutMilliseconds: timeoutMilliseconds) { token, reply in done.append(Completion(token: token, reply: Array(reply))) }
        return done
    }

    /// ``waitForCompletions(timeoutMilliseconds:)`` without copying: `body` sees each
    /// completion's token and reply bytes (valid only during the call; empty for a chain
    /// submitted with the caller's own segments) before the reply buffer is reused.
    ///
    /// - Returns: the number of completions.
    @discardableResult
    public func waitForCompletions(timeoutMilliseconds: Int32? = nil,
                                   _ body: (UInt64, UnsafeRawBufferPointer) -> Void) throws(FrontEndError) -> Int {
        var timeout = Timeout(milliseconds: timeoutMilliseconds ?? frontEnd.configuration.timeoutMilliseconds)
        while true {
            let generation = frontEnd.connectionGeneration.load(ordering: .acquiring)
            let (done, raced) = try lock.withLock { _ throws(FrontEndError) in
                let done = try reap(body)
                guard done == 0 else { return (done, false) }
                usedNotificationsSuppressed = false
                return (0, driver!.enableUsedNotifications())
            }
            if done > 0 { return done }
            if raced { continue }   // RCV-DRV-01: a completion raced in
            let n: Int
            do { n = try poller.wait(timeoutMilliseconds: timeout.remainingMilliseconds(), into: &events) } catch { throw .system(error) }
            if n == 0 { throw .timedOut("completions on queue \(index)") }
            for event in events {
                switch event.token {
                case 0: _ = try? call.drain()
                case 1: throw .deviceNeedsReset(queue: index)
                default:
                    // The back-end writes nothing unasked: readable means closed. With a
                    // reconnect policy the back-end restarted at the path takes over, and the
                    // wait starts again from there (GHT-RCN-01).
                    try frontEnd.backEndWentAway(seenGeneration: generation)
                    timeout = Timeout(milliseconds: timeoutMilliseconds ?? frontEnd.configuration.timeoutMilliseconds)
                }
            }
        }
    }

    /// A busy-polling client's reap: takes back every completion available now, without
    /// waiting and without asking the back-end for a used-buffer notification (they stay
    /// suppressed, so a polling back-end and client exchange no eventfd writes at all).
    /// Returns the number of completions; `body` as in ``waitForCompletions(timeoutMilliseconds:_:)``.
    @discardableResult
    public func pollCompletions(_ body: (UInt64, UnsafeRawBufferPointer) -> Void) throws(FrontEndError) -> Int {
        try lock.withLock { _ throws(FrontEndError) in
            if !usedNotificationsSuppressed {
                driver!.disableUsedNotifications()
                usedNotificationsSuppressed = true
            }
            return try reap(body)
        }
    }

    /// Takes back every used chain, showing `body` the replies in the queue's own buffers
    /// (under ``lock``): first those a reconnection took back, then the ring's.
    func reap(_ body: (UInt64, UnsafeRawBufferPointer) -> Void) throws(FrontEndError) -> Int {
        var count = 0
        if !pending.isEmpty {
            for p in pending { p.reply.withUnsafeBytes { body(p.token, $0) } }
            count = pending.count
            pending.removeAll()
        }
        return try count + reapRing(body)
    }

    /// Takes back every used chain of the ring (under ``lock``).
    func reapRing(_ body: (UInt64, UnsafeRawBufferPointer) -> Void) throws(FrontEndError) -> Int {
        var count = 0
        do {
            try driver!.reapAllUsed { used in
                if let slot = slotOfToken.removeValue(forKey: used.token) {
                    let lengths = slotLengths[slot]
                    let length = min(Int(used.writtenLength), lengths.reply)
                    // GHT-HBE-02: read once into private memory; GHT-HBE-06: the slot zeroed if asked.
                    let reply = replies.host.slice(offset: slot * replyPages * GrantHandle.pageSize, length: lengths.reply)
                    _ = reply.slice(offset: 0, length: length).copyBytes(into: replyCopy)
                    if scrubsSlots {
                        reply.slice(offset: 0, length: length).fill(with: 0)
                        requests.host.slice(offset: slot * requestPages * GrantHandle.pageSize, length: lengths.request).fill(with: 0)
                    }
                    body(used.token, UnsafeRawBufferPointer(rebasing: replyCopy.prefix(length)))
                    freeSlots.append(slot)
                    receivedCount += length
                } else {
                    body(used.token, UnsafeRawBufferPointer(start: nil, count: 0))
                }
                completedCount += 1
                count += 1
            }
        } catch {
            throw .queue(error)
        }
        return count
    }

    /// After a reset: every outstanding request is abandoned and its buffers are free again
    /// (CLN-DRV-02: the queue is no longer live).
    func abandonOutstanding() {
        lock.withLock { _ in
            _ = driver?.detachAllOutstanding()
            pending = []
        }
        requests.host.fill(with: 0)   // GHT-HBE-04: abandoned slots hold nothing either
        replies.host.fill(with: 0)
        _ = try? err.drain()
        _ = try? call.drain()
    }
}
