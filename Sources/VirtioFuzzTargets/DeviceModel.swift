import VirtioCore

/// The device-side operations whose checks depend on the ring format.
protocol FuzzedDeviceQueue: DeviceQueue, ~Copyable where Memory == IdentityTranslator {
    /// Where the next used element goes (checked after ``addUsed``).
    var usedCheckpoint: Int { get }
    func checkUsed(at checkpoint: Int, _ chain: DescriptorChain, length: UInt32)
    func checkPublished()
    mutating func fuzzReset(_ input: inout FuzzInput)
    /// What a hostile driver does to the ring's indices or flags between operations.
    func hostileIndexChange(_ input: inout FuzzInput)
    mutating func fuzzProcess(limit: Int, _ body: (DescriptorChain, IdentityTranslator) throws(VirtqueueError) -> UInt32) throws(VirtqueueError)
}

/// What a device-side target knows independently of the queue, and the checks it makes
/// after each fuzzed operation, for either ring format.
struct DeviceModel<Queue: FuzzedDeviceQueue & ~Copyable> {
    let region: GuestMemoryRegion
    let queueSize: Int
    /// Bytes at the start of the region that hold the ring (rewritten by the hostile driver).
    let ringBytes: Int
    var inFlight: [DescriptorChain] = []
    var brokenBy: VirtqueueError?
    var usedWritten = 0
    var resolver = ChainResolver()

    init(region: GuestMemoryRegion, queueSize: Int, ringBytes: Int) {
        self.region = region
        self.queueSize = queueSize
        self.ringBytes = ringBytes
    }

    mutating func step(_ queue: inout Queue, _ input: inout FuzzInput, status: DeviceStatusCell) {
        let op = input.byte() % 12
        do throws(VirtqueueError) {
            switch op {
            case 0, 1:
                if let chain = try queue.popAvailable() { popped(chain) }
            case 2:
                if let chain = pick(&input) { try checkReader(queue, chain, &input) }
            case 3:
                if let chain = pick(&input) { checkWriter(queue, chain, &input) }
            case 4:
                if let (i, chain) = pickIndexed(&input) {
                    let length = chain.writableLength == 0 ? 0 : UInt32(truncatingIfNeeded: UInt64(input.integer(UInt32.self)) % (chain.writableLength + 1))
                    let slot = queue.usedCheckpoint
                    queue.addUsed(chain, length: length)
                    inFlight.remove(at: i)
                    if !queue.isBroken { queue.checkUsed(at: slot, chain, length: length) }
                }
            case 5:
                queue.publishUsed()
                if !queue.isBroken { queue.checkPublished() }
                _ = queue.needsNotification()
            case 6:
                if input.bool() { _ = queue.enableNotifications() } else { queue.disableNotifications() }
            case 7:
                queue.fuzzReset(&input)
                inFlight.removeAll()
                brokenBy = nil
                fuzzCheck(!queue.isBroken && queue.inFlightCount == 0, "reset left state behind")
            case 8:
                queue.hostileIndexChange(&input)
            case 9:
                // The hostile driver rewrites a byte of the ring or of a table.
                region.write([input.byte()], at: UInt64(input.index(below: ringBytes)))
            case 10:
                let limit = 1 + Int(input.byte() % 8)
                try queue.fuzzProcess(limit: limit) { (chain, memory) throws(VirtqueueError) -> UInt32 in
                    self.popped(chain, processing: true)
                    var reader = ChainReader(chain: chain, memory: memory)
                    var sink = [UInt8](repeating: 0, count: 64)
                    while true {
                        let n: Result<Int, ChainAccessError> = sink.withUnsafeMutableBytes { b in
                            Result { () throws(ChainAccessError) in try reader.read(into: b) }
                        }
                        switch n {
                        case .success(let count): if count == 0 { return 0 }
                        case .failure(.fault(let fault)): throw .memoryFault(fault)
                        case .failure(let other): fuzzCheck(false, "the reader failed with \(other) inside the chain"); return 0
                        }
                    }
                }
            default:
                if let chain = pick(&input) { checkResolved(queue, chain) }
                if input.bool(), let last = inFlight.last {
                    queue.giveBack(last)
                    inFlight.removeLast()
                }
            }
        } catch {
            if let first = brokenBy { fuzzCheck(error == first, "a broken queue threw \(error), first \(first)") }
            brokenBy = error
            fuzzCheck(queue.isBroken && queue.failure == error, "an error that did not break the queue: \(error)")
            fuzzCheck(status.status.contains(.deviceNeedsReset), "broken without DEVICE_NEEDS_RESET")
            inFlight.removeAll()   // their epoch is over; completing them does nothing
            do {
                _ = try queue.popAvailable()
                fuzzCheck(false, "a broken queue popped")
            } catch {
                fuzzCheck(error == brokenBy, "a broken queue rethrew \(error)")
            }
        }
        if brokenBy == nil {
            fuzzCheck(queue.inFlightCount == inFlight.count, "in flight: queue \(queue.inFlightCount), model \(inFlight.count)")
        }
    }

    func pickIndexed(_ input: inout FuzzInput) -> (Int, DescriptorChain)? {
        guard !inFlight.isEmpty else { return nil }
        let i = input.index(below: inFlight.count)
        return (i, inFlight[i])
    }

    func pick(_ input: inout FuzzInput) -> DescriptorChain? { pickIndexed(&input)?.1 }

    /// A new chain: well formed whatever the ring held.
    mutating func popped(_ chain: DescriptorChain, processing: Bool = false) {
        fuzzCheck(Int(chain.headIndex) < queueSize, "head \(chain.headIndex) out of range")
        fuzzCheck(!inFlight.contains { $0.headIndex == chain.headIndex }, "head \(chain.headIndex) popped twice")
        let segments = chain.segments.array
        fuzzCheck(segments.count == chain.segmentCount && (1...queueSize).contains(segments.count), "\(segments.count) segments")
        fuzzCheck(segments.prefix(chain.readableSegmentCount).allSatisfy { !$0.isWritable }
                  && segments.dropFirst(chain.readableSegmentCount).allSatisfy(\.isWritable), "readable after writable")
        let readable = segments.prefix(chain.readableSegmentCount).reduce(UInt64(0)) { $0 + UInt64($1.length) }
        let writable = segments.dropFirst(chain.readableSegmentCount).reduce(UInt64(0)) { $0 + UInt64($1.length) }
        fuzzCheck(readable == chain.readableLength && writable == chain.writableLength, "lengths")
        // GHT-VAL-12: more than 2^32 bytes is malformed; exactly 2^32 is a legal chain.
        fuzzCheck(readable + writable <= 1 << 32, "a chain over 2^32 bytes")
        if !processing {
            inFlight.append(chain)
            if inFlight.count > 32 { inFlight.removeFirst() }   // forgotten by the model, never completed
        }
    }

    /// The bytes the reader must yield: each readable segment's, up to the first one outside the region.
    func reference(_ chain: DescriptorChain, writable: Bool) -> (bytes: [UInt8], complete: Bool) {
        var bytes: [UInt8] = []
        for s in chain.segments where s.isWritable == writable && s.length > 0 {
            guard region.hostRange(at: s.address, count: Int(s.length)) != nil else { return (bytes, false) }
            bytes += region.read(at: s.address, count: Int(s.length))
        }
        return (bytes, true)
    }

    func checkReader(_ queue: borrowing Queue, _ chain: DescriptorChain, _ input: inout FuzzInput) throws(VirtqueueError) {
        let expected = reference(chain, writable: false)
        var reader = queue.reader(for: chain)
        var got: [UInt8] = []
        var faulted = false
        while reader.remaining > 0 {
            let want = 1 + Int(input.byte())
            var chunk = [UInt8](repeating: 0, count: min(want, reader.remaining))
            do {
                let n = try chunk.withUnsafeMutableBytes { b throws(ChainAccessError) in try reader.read(into: b) }
                got += chunk.prefix(n)
                if n == 0 { break }
            } catch {
                faulted = true
                break
            }
        }
        if expected.complete {
            fuzzCheck(!faulted && got == expected.bytes, "the reader's bytes differ from the segments'")
        } else {
            fuzzCheck(faulted && expected.bytes.starts(with: got.prefix(expected.bytes.count)), "no fault at an unreachable segment")
        }
    }

    func checkWriter(_ queue: borrowing Queue, _ chain: DescriptorChain, _ input: inout FuzzInput) {
        let snapshotOfReadable = reference(chain, writable: false)
        var writer = queue.writer(for: chain)
        let count = min(Int(input.integer(UInt16.self)), 8192)
        let pattern = (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 29 &+ 3) }
        var faulted = false
        do {
            _ = try pattern.withUnsafeBytes { b throws(ChainAccessError) in try writer.write(b) }
        } catch {
            faulted = true
        }
        fuzzCheck(UInt64(writer.bytesWritten) <= chain.writableLength, "wrote past the writable capacity")
        // The bytes written are where the writable segments say, in order (unless segments overlap,
        // when a later one may have overwritten an earlier one: then only the last is checked).
        let written = reference(chain, writable: true)
        let overlap = overlaps(chain)
        if written.complete && !faulted && !overlap {
            fuzzCheck(Array(written.bytes.prefix(writer.bytesWritten)) == Array(pattern.prefix(writer.bytesWritten)), "the writer's bytes are not in the writable segments")
        }
        // A readable segment that shares no byte with a writable one is untouched (SPL-DEV-01).
        if !overlap, snapshotOfReadable.complete { fuzzCheck(reference(chain, writable: false).bytes == snapshotOfReadable.bytes, "the writer wrote a readable segment") }
    }

    /// Whether any two non-empty segments of `chain` share a byte (or a segment overlaps the ring).
    func overlaps(_ chain: DescriptorChain) -> Bool {
        let ranges = chain.segments.filter { $0.length > 0 }.map { ($0.address, $0.address &+ UInt64($0.length)) }
        let ringEnd = UInt64(ringBytes + 4096)
        for (i, a) in ranges.enumerated() {
            if a.0 < ringEnd { return true }
            for b in ranges[(i + 1)...] where a.0 < b.1 && b.0 < a.1 { return true }
        }
        return false
    }

    mutating func checkResolved(_ queue: borrowing Queue, _ chain: DescriptorChain) {
        resolver.removeAll()
        let expected = reference(chain, writable: false)
        do {
            let (readable, writable) = try resolver.resolve(chain, through: queue.memory)
            fuzzCheck(expected.complete && reference(chain, writable: true).complete, "resolved a chain with an unreachable segment")
            var reader = FragmentReader(resolver.fragments, readable)
            let bytes = (try? reader.readBytes(reader.remaining)) ?? []
            fuzzCheck(bytes == expected.bytes, "resolved readable bytes differ")
            fuzzCheck(UInt64(FragmentWriter(resolver.fragments, writable).capacity) == chain.writableLength, "resolved writable capacity")
        } catch {
            fuzzCheck(!expected.complete || !reference(chain, writable: true).complete, "a reachable chain did not resolve: \(error)")
            fuzzCheck(resolver.fragments.isEmpty, "a failed resolve left fragments")
        }
    }
}
