import VirtioCore
import VirtioTransport

/// The data path: a transmitted batch crosses the switch as one burst, and a receive batch is
/// filled from the port's queue under one hold of its lock; no allocation per frame (GHT-NET-09).
extension NetworkDevice {
    /// GHT-NET-02: each buffer gets the header and one whole frame, or (too small) nothing.
    func receive(_ batch: inout RequestBatch) {
        var received: UInt64 = 0, tooSmall: UInt64 = 0
        let source = networkSwitch.sourceFrameLength, mac = self.mac
        waiting.withLock { queue in
            for i in 0..<batch.count {
                if let source, queue.count == 0 { Self.generate(into: &queue, count: batch.count - i, length: source, to: mac) }
                var writer = batch.writer(i)
                // Only after a reset raced the batch are there fewer frames than buffers: the
                // buffer then completes empty.
                _ = queue.removeFirst { frame in
                    guard writer.capacity >= NetworkHeader.byteCount + frame.count else {
                        tooSmall += 1
                        return
                    }
                    _ = NetworkHeader.receive.withUnsafeBytes { writer.write($0) }
                    _ = writer.write(frame)
                    received += 1
                }
                batch.complete(i, with: writer)
            }
        }
        counters.withLock { s in
            s.framesReceived += received
            s.droppedBufferTooSmall += tooSmall
        }
    }

    /// GHT-NET-10: the switch's traffic source fills the empty queue with up to `count` frames of `length`
    /// bytes to `destination` (zero payload, EtherType 0x88B5, local experimental).
    private static func generate(into queue: inout NetworkFrameQueue, count: Int, length: Int, to destination: EthernetAddress) {
        let source = NetworkSwitch.sourceAddress
        while queue.count < min(count, queue.capacity) {
            _ = queue.append(from: 0, flooded: false, floodBudget: 0) { slot in
                // A tuple of bytes (contiguous, no allocation), not an array.
                let header: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) = (destination.bytes.0, destination.bytes.1, destination.bytes.2, destination.bytes.3, destination.bytes.4, destination.bytes.5,
                              source.bytes.0, source.bytes.1, source.bytes.2, source.bytes.3, source.bytes.4, source.bytes.5, 0x88, 0xB5)
                withUnsafeBytes(of: header) { slot.copyMemory(from: $0) }
                slot.baseAddress!.advanced(by: 14).initializeMemory(as: UInt8.self, repeating: 0, count: length - 14)
                return length
            }
        }
    }

    /// GHT-NET-01: each buffer is a header and one frame. The burst's addresses are read, the
    /// switch routes the burst under one lock hold, and each target port copies its frames
    /// straight from this guest's buffers into its queue. Every buffer completes with 0.
    func transmit(_ batch: inout RequestBatch) {
        var tally = Statistics()
        burst.withLock { b in
            for i in 0..<batch.count {
                var reader = batch.reader(i)
                let frameLength = reader.remaining - NetworkHeader.byteCount
                guard frameLength >= 14 && frameLength <= NetworkSwitch.maxFrameSize else {
                    tally.malformed += 1
                    continue
                }
                reader.skip(NetworkHeader.byteCount)
                var addresses: (UInt64, UInt64) = (0, 0)
                withUnsafeMutableBytes(of: &addresses) { raw in
                    _ = reader.read(into: UnsafeMutableRawBufferPointer(rebasing: raw[0..<12]))
                    b.append(request: i, destination: EthernetAddress(UnsafeRawBufferPointer(raw), at: 0),
                             source: EthernetAddress(UnsafeRawBufferPointer(raw), at: 6))
                }
            }
            guard !b.frames.isEmpty else { return }
            networkSwitch.route(&b, from: port)
            for route in b.routes {
                switch route {
                case TransmitBurst.spoofed: tally.droppedSpoofed += 1
                case TransmitBurst.unplugged: tally.droppedUnplugged += 1
                default: tally.framesSent += 1
                }
            }
            for (j, target) in b.targets.enumerated() { target.accept(b, route: j, from: port, batch: batch) }
            for target in b.floodTargets { target.accept(b, route: TransmitBurst.flood, from: port, batch: batch) }
            b.removeAll()
        }
        counters.withLock { s in
            s.framesSent += tally.framesSent
            s.malformed += tally.malformed
            s.droppedSpoofed += tally.droppedSpoofed
            s.droppedUnplugged += tally.droppedUnplugged
        }
    }

    /// Queues the frames of `burst` routed `route` (from port `source`, in the sender's
    /// `batch`) for this port's guest, copying each once from the sender's buffers into a slot,
    /// under one hold of the queue's lock. A frame is dropped when the queue is full
    /// (GHT-NET-04), or it is flooded and `source` has its budget of flooded frames waiting
    /// here already (GHT-ISO-03). The doorbell rings when the queue was empty (GHT-NET-08).
    func accept(_ burst: TransmitBurst, route: Int, from source: Int, batch: RequestBatch) {
        let budget = networkSwitch.floodBudget, flooded = route == TransmitBurst.flood
        var full: UInt64 = 0, overBudget: UInt64 = 0, queued = 0
        let wasEmpty = waiting.withLock { queue in
            let wasEmpty = queue.count == 0
            for k in 0..<burst.frames.count where burst.routes[k] == route {
                var reader = batch.reader(burst.frames[k].request)
                let refusal = queue.append(from: source, flooded: flooded, floodBudget: budget) { slot in
                    reader.skip(NetworkHeader.byteCount)
                    return reader.read(into: slot)
                }
                switch refusal {
                case nil: queued += 1
                case .full: full += 1
                case .floodBudget: overBudget += 1
                }
            }
            return wasEmpty
        }
        if full + overBudget > 0 {
            counters.withLock { s in
                s.droppedQueueFull += full
                s.droppedFloodBudget += overBudget
            }
        }
        if wasEmpty && queued > 0 { doorbell.withLock { $0 }?.ring() }
    }
}
