import VirtioSystem
import VirtioCore
import VirtioGrants
import VirtioDevices
import VirtioTransport

/// A guest (a front-end): it connects to a back-end, negotiates, shares its pool and grant
/// table, and runs one workload on queue 0, verifying every reply byte for byte. What
/// `virtio-grant guest` runs in its own process; a test or an embedder runs it in theirs.
///
/// ```swift
/// var workload = GuestWorkload(socket: path, kind: .stream)
/// workload.seconds = 1
/// let report = workload.run()   // report.ok: every check held
/// ```
public struct GuestWorkload: Sendable {
    public enum Kind: String, CaseIterable, Sendable {
        /// Requests of varying size split over 1-4 buffers, for ``seconds``; against the
        /// checksum device (reply: checksum + echo).
        case stream
        /// Fixed-size requests keeping the queue full, for ``seconds``; against the echo device.
        case throughput
        /// ``requests`` single round trips of fixed size, one at a time; against the echo device.
        case latency
    }

    /// The back-end's unix socket.
    public var socket: String
    public var kind: Kind
    /// How long stream and throughput run.
    public var seconds = 2.0
    /// Round trips of the latency workload.
    public var requests = 10_000
    /// The largest (stream) or fixed request size, 1...61440 bytes.
    public var payload: Int
    /// This guest's grant domain (1...0x7FEF).
    public var domain = 1
    /// Halfway through the stream, put a never-granted handle in a chain, expect the
    /// back-end to refuse it (DEVICE_NEEDS_RESET), reset and carry on.
    public var presentsForbiddenHandle = false
    public var mode = FrontEndConfiguration.AddressMode.grants
    public var ring = FrontEndConfiguration.RingFormat.split
    /// A split ring's size is a power of 2 (TRN-M-04); a packed ring's need not be.
    public var queueSize = 256
    /// Requests in flight at most (1...queueSize).
    public var outstanding = 64
    /// Reconnect to a back-end restarted at ``socket`` within this many seconds of its end
    /// (``FrontEndReconnectPolicy``); nil (the default): a back-end's end stops the workload.
    public var reconnectSeconds: Double?
    /// Called with 0 once the front-end is connected and set up, before the workload starts,
    /// and with the count of reconnections each time the stream workload finds one more.
    public var onConnected: (@Sendable (_ reconnections: Int) -> Void)?

    /// A workload of `kind` against `socket`; the payload is 16 KiB for a stream, else 4 KiB.
    public init(socket: String, kind: Kind = .stream) {
        self.socket = socket
        self.kind = kind
        payload = kind == .stream ? 16 * 1024 : 4096
    }

    /// What is wrong with the configuration, if anything (the `guest` command says the same
    /// in its usage errors).
    public var problem: String? {
        if !(seconds > 0) { return "seconds must be positive" }
        if requests < 1 { return "requests must be at least 1" }
        if !(1...(60 * 1024)).contains(payload) { return "payload must be in 1...61440" }
        if !(1...0x7FEF).contains(domain) { return "domain must be in 1...32751" }
        if !(1...32768).contains(queueSize) { return "queue size must be in 1...32768" }
        if ring == .split && queueSize & (queueSize - 1) != 0 { return "queue size must be a power of 2 for a split ring" }
        if !(1...queueSize).contains(outstanding) { return "outstanding must be in 1...\(queueSize)" }
        if let r = reconnectSeconds, !(r > 0 && r <= 3600) { return "reconnect seconds must be in (0, 3600]" }
        return nil
    }

    /// Connects, runs the workload, closes; never throws: the report holds the error that
    /// stopped it, if any.
    public func run() -> GuestReport {
        var report = GuestReport(workload: self)
        if let problem {
            report.error = "invalid workload: \(problem)"
            return report
        }
        var configuration = FrontEndConfiguration()
        configuration.mode = mode
        configuration.ring = ring
        configuration.domain = DomainID(UInt16(domain))
        configuration.queueSize = queueSize
        configuration.maxOutstanding = outstanding
        configuration.maxRequestSize = max(payload, 4096)
        configuration.maxReplySize = max(payload + 8, 4096)
        configuration.reconnect = reconnectSeconds.map { FrontEndReconnectPolicy(retryIntervalMilliseconds: 20, timeLimitMilliseconds: Int32($0 * 1000)) }
        let start = SystemClock.monotonic.seconds
        do throws(FrontEndError) {
            let frontEnd = try FrontEnd.connect(socketPath: socket, configuration: configuration)
            defer { report.reconnects = frontEnd.reconnectCount }
            onConnected?(0)
            switch kind {
            case .stream: try stream(frontEnd, &report)
            case .throughput: try throughput(frontEnd, &report)
            case .latency: try latency(frontEnd, &report)
            }
            let queue = frontEnd.queues[0]
            report.bytesSent = queue.bytesSent
            report.bytesReceived = queue.bytesReceived
            frontEnd.close()
            report.grantsMade = frontEnd.grantsMade
            report.grantsEnded = frontEnd.grantsEnded
        } catch {
            report.error = error.description
        }
        report.seconds = SystemClock.monotonic.seconds - start
        return report
    }

    /// The stream workload: sizes vary 1...payload, requests are split over 1-4 readable buffers
    /// (so multi-descriptor and indirect chains occur), every reply is checked. With
    /// ``presentsForbiddenHandle``, halfway through the guest puts a handle it never granted in
    /// a chain: the back-end must refuse it and break the queue, and the guest resets the
    /// device and carries on.
    func stream(_ frontEnd: FrontEnd, _ s: inout GuestReport) throws(FrontEndError) {
        let queue = frontEnd.queues[0]
        var inFlight: [UInt64: (n: Int, length: Int)] = [:]
        var n = 0
        let start = SystemClock.monotonic.seconds
        var badDone = !presentsForbiddenHandle
        var reconnections = 0
        func check(_ token: UInt64, _ reply: UnsafeRawBufferPointer) {
            guard let (k, length) = inFlight.removeValue(forKey: token) else { s.mismatches += 1; return }
            let expected = Payload.bytes(k, length: length)
            let checksum = Payload.littleEndian(ChecksumEchoDevice.checksum(expected))
            if reply.count != 8 + length || !reply.prefix(8).elementsEqual(checksum) || !Payload.equal(expected, reply[8...]) {
                s.mismatches += 1
            }
            s.chains += 1
        }
        while true {
            let elapsed = SystemClock.monotonic.seconds - start
            // Checked before the end of the run: on a loaded machine one round of the loop can
            // take longer than the second half of the run, and the handle is presented anyway.
            if !badDone && elapsed >= seconds / 2 {
                while !inFlight.isEmpty { try queue.waitForCompletions(check) }
                try presentForbiddenHandle(frontEnd, &s)
                badDone = true
                continue
            }
            if elapsed < seconds {
                while queue.freeCount > 0 {
                    let length = 1 + (n &* 7919) % payload
                    let token = try queue.submit(Payload.bytes(n, length: length), replyCapacity: 8 + length, parts: 1 + n % 4)
                    inFlight[token] = (n, length)
                    n += 1
                }
                try queue.publish()
            } else if inFlight.isEmpty {
                break
            }
            try queue.waitForCompletions(check)
            if let onConnected, frontEnd.reconnectCount != reconnections {
                reconnections = frontEnd.reconnectCount
                onConnected(reconnections)
            }
        }
    }

    /// The step that shows the mapper at work: a descriptor naming memory the guest never shared.
    func presentForbiddenHandle(_ frontEnd: FrontEnd, _ s: inout GuestReport) throws(FrontEndError) {
        let queue = frontEnd.queues[0]
        try queue.submit(readable: [BufferSegment(address: frontEnd.forbiddenAddress, length: 512)], writable: [])
        try queue.publish()
        do {
            let completions = try queue.waitForCompletions()
            s.mismatches += completions.count   // the device must never complete such a chain
        } catch .deviceNeedsReset {
            s.faultsBlocked += 1
        }
        try frontEnd.reset()
        s.resets += 1
    }

    /// Fixed-size requests, the queue kept as full as ``outstanding`` allows.
    func throughput(_ frontEnd: FrontEnd, _ s: inout GuestReport) throws(FrontEndError) {
        let queue = frontEnd.queues[0]
        let payloads = (0..<64).map { Payload.bytes($0, length: payload) }
        var inFlight: [UInt64: Int] = [:]
        var n = 0
        let start = SystemClock.monotonic.seconds
        while true {
            if SystemClock.monotonic.seconds - start < seconds {
                while queue.freeCount > 0 {
                    inFlight[try queue.submit(payloads[n & 63], replyCapacity: payload)] = n & 63
                    n += 1
                }
                try queue.publish()
            } else if inFlight.isEmpty {
                break
            }
            try queue.waitForCompletions { token, reply in
                guard let k = inFlight.removeValue(forKey: token), Payload.equal(payloads[k], reply[...]) else { s.mismatches += 1; return }
                s.chains += 1
            }
        }
    }

    /// Single requests, each waited for before the next: round-trip latency (after 100
    /// round trips of warm-up).
    func latency(_ frontEnd: FrontEnd, _ s: inout GuestReport) throws(FrontEndError) {
        let queue = frontEnd.queues[0]
        let request = Payload.bytes(7, length: payload)
        var samples: [Double] = []
        samples.reserveCapacity(requests)
        let warmup = min(100, requests)
        for i in 0..<(warmup + requests) {
            let t0 = SystemClock.monotonic.seconds
            try queue.submit(request, replyCapacity: payload)
            try queue.publish()
            var completions = try queue.waitForCompletions()
            while completions.isEmpty { completions = try queue.waitForCompletions() }
            let t1 = SystemClock.monotonic.seconds
            if completions.count != 1 || completions[0].reply != request { s.mismatches += 1 }
            s.chains += 1
            if i >= warmup { samples.append((t1 - t0) * 1e6) }
        }
        samples.sort()
        s.roundTrip = GuestReport.RoundTrip(p50: samples[samples.count / 2], p99: samples[min(samples.count - 1, samples.count * 99 / 100)],
                                            mean: samples.reduce(0, +) / Double(samples.count))
    }
}
