import VirtioSystem
import VirtioCore
import VirtioGrants
import VirtioTransport

/// Workload W1: one thread plays driver and device of a queue of size 256 in lock-step, split
/// or packed (the same workload over either format: JSON key `ring`).
///
/// The driver adds `batch` chains of `descs` descriptors (the first device-readable, 16 bytes;
/// the rest device-writable, 64 bytes; each in its own 4 KiB page) and publishes once per
/// batch; the device pops every available chain, walks it, translates each descriptor to a
/// host range, sums the lengths, adds used and publishes once per batch; the driver reaps.
/// Rate: chains per CPU-second of the thread, median of the runs.
struct RingBenchmark {
    static let queueSize = 256
    static let pages = 4096
    static let page = 4096

    let descs: Int
    let batch: Int
    let packed: Bool
    let seconds: Double
    let runs: Int

    /// The guest-visible addresses of the `batch` chains' segments, page `16 + i` for segment i.
    func segments(pageAddress: (Int) -> UInt64) -> [BufferSegment] {
        var segments: [BufferSegment] = []
        for b in 0..<batch {
            for d in 0..<descs {
                segments.append(BufferSegment(address: pageAddress(16 + b * descs + d), length: d == 0 ? 16 : 64))
            }
        }
        return segments
    }

    /// Runs the workload over guest-physical (identity) translation.
    func runIdentity() -> JSONLine {
        let region = GuestMemoryRegion(size: Self.pages * Self.page)
        let segments = segments { region.guestBase + UInt64($0 * Self.page) }
        if packed {
            let layout = PackedRingLayout(queueSize: Self.queueSize)!
            let features: VirtioFeatures = [.version1, .ringPacked]
            var driver = PackedDriverQueue(ring: try! PackedRing(layout: layout, contiguous: region.range), features: features)
            var device = try! PackedDeviceQueue(queueSize: Self.queueSize, addresses: PackedRingAddresses(contiguousAt: region.guestBase, layout: layout),
                                                memory: region.identityTranslator, features: features)
            return measure(translator: "identity") { checksum in
                Self.lockStep(driver: &driver, device: &device, segments: segments.span, descs: descs, batch: batch, checksum: &checksum)
            }
        }
        let layout = SplitRingLayout(queueSize: Self.queueSize)!
        let ring = try! SplitRing(layout: layout, contiguous: region.range)
        let addresses = SplitRingAddresses(contiguousAt: region.guestBase, layout: layout)
        var driver = SplitDriverQueue(ring: ring, features: [.version1])
        var device = try! SplitDeviceQueue(queueSize: Self.queueSize, addresses: addresses,
                                           memory: region.identityTranslator, features: [.version1])
        return measure(translator: "identity") { checksum in
            Self.lockStep(driver: &driver, device: &device, segments: segments.span, descs: descs, batch: batch, checksum: &checksum)
        }
    }

    /// Runs the workload over grant handles: the front-end grants the ring pages and every
    /// buffer page once (persistent grants; the ring's areas read-only or writable as the
    /// device needs them), the device's ring is the granted one translated at setup, and each
    /// descriptor's handle is translated through a per-queue IOTLB (1024 entries, as the C
    /// reference's) with its direction checked against the grant.
    func runGranted() -> JSONLine {
        let frames = GuestMemoryRegion(size: Self.pages * Self.page)
        let tableRegion = GuestMemoryRegion(size: (Self.pages + GrantReference.reservedCount) * GrantEntry.size)
        let frontEnd = DomainID(1), backEnd = DomainID(0)
        let table = GrantTable(table: tableRegion.range, domain: frontEnd, frameCount: Self.pages)
        let mapper = GrantMapper(table: tableRegion.range, granter: frontEnd, frames: frames.range, domain: backEnd, owners: [tableRegion, frames])
        // Split: descriptor table and available ring in frames 0-1 (read-only), used ring in
        // frame 2. Packed: the descriptor ring in frame 0 (writable: used descriptors), the
        // driver's event area in frame 1 (read-only), the device's in frame 2.
        let descRef = try! table.grant(frame: 0, to: backEnd, readOnly: !packed)
        let availRef = try! table.grant(frame: 1, to: backEnd, readOnly: true)
        let usedRef = try! table.grant(frame: 2, to: backEnd, readOnly: false)
        let page = { (f: Int) in frames.range.slice(offset: f * Self.page, length: Self.page) }
        let handles = (GrantHandle(reference: descRef).rawValue, GrantHandle(reference: availRef).rawValue,
                       GrantHandle(reference: usedRef).rawValue)
        // Buffer frames 16...: the first segment of a chain read-only, the others writable.
        var references: [Int: GrantReference] = [:]
        for b in 0..<batch {
            for d in 0..<descs {
                let f = 16 + b * descs + d
                references[f] = try! table.grant(frame: UInt32(f), to: backEnd, readOnly: d == 0)
            }
        }
        let iotlb = GrantIOTLB(mapper: mapper, capacity: 1024)
        let segments = segments { GrantHandle(reference: references[$0]!).rawValue }
        if packed {
            let layout = PackedRingLayout(queueSize: Self.queueSize)!
            let features: VirtioFeatures = [.version1, .accessPlatform, .ringPacked]
            let granted = try! GrantedPackedRing(layout: layout, addresses: PackedRingAddresses(descriptorRing: handles.0, driverEventArea: handles.1,
                                                                                                deviceEventArea: handles.2), mapper: mapper)
            var driver = PackedDriverQueue(ring: try! PackedRing(layout: layout, descriptorRing: page(0), driverEventArea: page(1), deviceEventArea: page(2)),
                                           features: features)
            var device = PackedDeviceQueue(ring: granted.ring, memory: iotlb.translator, features: features)
            return withExtendedLifetime((granted, iotlb)) {
                measure(translator: "grant") { checksum in
                    Self.lockStep(driver: &driver, device: &device, segments: segments.span, descs: descs, batch: batch, checksum: &checksum)
                }
            }
        }
        let layout = SplitRingLayout(queueSize: Self.queueSize)!
        let features: VirtioFeatures = [.version1, .accessPlatform]
        let granted = try! GrantedSplitRing(layout: layout, addresses: SplitRingAddresses(descriptorTable: handles.0, availRing: handles.1,
                                                                                          usedRing: handles.2), mapper: mapper)
        var driver = SplitDriverQueue(ring: try! SplitRing(layout: layout, descriptorTable: page(0), availRing: page(1), usedRing: page(2)),
                                      features: features)
        var device = SplitDeviceQueue(ring: granted.ring, memory: iotlb.translator, features: features)
        return withExtendedLifetime((granted, iotlb)) {
            measure(translator: "grant") { checksum in
                Self.lockStep(driver: &driver, device: &device, segments: segments.span, descs: descs, batch: batch, checksum: &checksum)
            }
        }
    }

    /// Times `body` (one call = 256 lock-step iterations) until `seconds` of thread CPU time
    /// have passed, `runs` times, and reports the median rate.
    func measure(translator: String, _ body: (inout UInt64) -> Int) -> JSONLine {
        var rates: [Double] = []
        var checksum: UInt64 = 0
        var total = 0
        for _ in 0..<runs {
            var chains = 0
            let start = SystemClock.threadCPUTime.seconds
            var elapsed = 0.0
            repeat {
                chains += body(&checksum)
                elapsed = SystemClock.threadCPUTime.seconds - start
            } while elapsed < seconds
            rates.append(Double(chains) / elapsed)
            total += chains
        }
        var line = JSONLine()
        line.add("workload", "ring")
        line.add("impl", "swift")
        line.add("ring", packed ? "packed" : "split")
        line.add("descs", descs)
        line.add("batch", batch)
        line.add("translator", translator)
        line.add("chains_per_cpu_s", median(rates))
        line.add("min_chains_per_cpu_s", rates.min() ?? 0)
        line.add("max_chains_per_cpu_s", rates.max() ?? 0)
        line.add("runs", runs)
        line.add("chains", total)
        line.add("checksum", checksum & 0xffff)
        return line
    }

    /// The split ring's lock-step loop, written for the concrete queue types: through the
    /// generic loop below, the compiler keeps `SplitDriverQueue.add` out of line (an A/B on
    /// one machine: 55.8 against 66.2 M chains per CPU-second at batch 1). Same workload,
    /// same checks; the chains are counted by the used index, which moves once per chain.
    @inline(never)
    static func lockStep<Memory: MemoryTranslator>(driver: inout SplitDriverQueue, device: inout SplitDeviceQueue<Memory>,
                                                   segments: Span<BufferSegment>, descs: Int, batch: Int,
                                                   checksum: inout UInt64) -> Int {
        precondition(segments.count == descs * batch && descs >= 1)
        // The loop runs in a closure that returns the checksum, so that it stays in a register
        // rather than behind a capture.
        let usedBefore = device.nextUsedIndex
        let sum = unsafe segments.withUnsafeBufferPointer { buffer -> UInt64 in
            let base = buffer.baseAddress.unsafelyUnwrapped
            // Stated here so that the compiler can drop per-chain span checks.
            precondition(descs >= 1 && batch >= 1 && Int(bitPattern: base) & (MemoryLayout<BufferSegment>.alignment - 1) == 0)
            var sum: UInt64 = 0
            do {
                let end = base + descs &* batch
                for _ in 0..<256 {
                    // Chain by chain through the segment buffer; the token is the chain's first
                    // segment's host address (any value the caller likes).
                    var next = base
                    repeat {
                        let first = next
                        let readable = unsafe Span(_unsafeStart: first, count: 1)
                        let writable = unsafe Span(_unsafeStart: first + 1, count: descs &- 1)
                        try driver.add(readable: readable, writable: writable, token: UInt64(UInt(bitPattern: first)))
                        next = first + descs
                    } while next != end
                    driver.publish()
                    while let chain = try device.popAvailable() {
                        var total: UInt64 = 0
                        for segment in chain.segments {
                            sum &+= UInt64(try device.memory.translate(segment).startAddress)
                            total &+= UInt64(segment.length)
                        }
                        sum &+= total
                        device.addUsed(chain, length: UInt32(truncatingIfNeeded: chain.writableLength))
                    }
                    device.publishUsed()
                    while let used = try driver.reapUsed() { sum &+= used.token }
                }
            } catch {
                fatalError("the benchmark's own ring broke: \(error)")
            }
            return sum
        }
        checksum &+= sum
        precondition(driver.outstandingCount == 0, "the driver did not take every chain back")
        return Int(device.nextUsedIndex &- usedBefore)
    }

    /// 256 iterations of: the driver adds and publishes a batch, the device consumes it, the
    /// driver reaps.
    ///
    /// `segments` holds exactly `batch` chains of `descs` segments (see ``segments(pageAddress:)``),
    /// so each chain's readable and writable spans are made from a pointer into it, checked
    /// once: the harness should cost as little as the C reference's, so that the rate measures
    /// the queues. The checksum is kept in a local; the chains are counted as the device
    /// completes them, and the driver must have taken them all back. Generic over the ring
    /// format and specialized for each.
    @inline(never)
    static func lockStep<Driver: LockStepDriver, Device: DeviceQueue & ~Copyable>(driver: inout Driver, device: inout Device,
                                                                    segments: Span<BufferSegment>, descs: Int, batch: Int,
                                                                    checksum: inout UInt64) -> Int {
        precondition(segments.count == descs * batch && descs >= 1)
        // The loop runs in a closure that returns the checksum and count, so that they stay in
        // registers rather than behind a capture.
        let (sum, chains) = unsafe segments.withUnsafeBufferPointer { buffer -> (UInt64, Int) in
            let base = buffer.baseAddress.unsafelyUnwrapped
            // Stated here so that the compiler can drop per-chain span checks.
            precondition(descs >= 1 && batch >= 1 && Int(bitPattern: base) & (MemoryLayout<BufferSegment>.alignment - 1) == 0)
            var sum: UInt64 = 0
            var chains = 0
            do {
                let end = base + descs &* batch
                for _ in 0..<256 {
                    // Chain by chain through the segment buffer; the token is the chain's first
                    // segment's host address (any value the caller likes).
                    var next = base
                    repeat {
                        let first = next
                        let readable = unsafe Span(_unsafeStart: first, count: 1)
                        let writable = unsafe Span(_unsafeStart: first + 1, count: descs &- 1)
                        try driver.lockStepAdd(readable: readable, writable: writable, token: UInt64(UInt(bitPattern: first)))
                        next = first + descs
                    } while next != end
                    driver.publish()
                    while let chain = try device.popAvailable() {
                        var total: UInt64 = 0
                        for segment in chain.segments {
                            sum &+= UInt64(try device.memory.translate(segment).startAddress)
                            total &+= UInt64(segment.length)
                        }
                        sum &+= total
                        device.addUsed(chain, length: UInt32(truncatingIfNeeded: chain.writableLength))
                        chains &+= 1
                    }
                    device.publishUsed()
                    while let used = try driver.lockStepReap() { sum &+= used.token }
                }
            } catch {
                fatalError("the benchmark's own ring broke: \(error)")
            }
            return (sum, chains)
        }
        checksum &+= sum
        precondition(driver.outstandingCount == 0, "the driver did not take every chain back")
        return chains
    }
}

/// The driver operations of the lock-step loop, with conformances in this module.
///
/// Through ``DriverQueue`` (whose conformances live in VirtioCore) the specialized loop kept
/// calling `SplitDriverQueue`'s always-inlined `add` and `reapUsed` through the witness table
/// (W1 at about 60% of its rate); witnesses declared here are devirtualized and inlined.
protocol LockStepDriver: DriverQueue {
    mutating func lockStepAdd(readable: Span<BufferSegment>, writable: Span<BufferSegment>, token: UInt64) throws(DriverQueueError)
    mutating func lockStepReap() throws(DriverQueueError) -> UsedBuffer?
}

extension SplitDriverQueue: LockStepDriver {
    @inline(__always)
    mutating func lockStepAdd(readable: Span<BufferSegment>, writable: Span<BufferSegment>, token: UInt64) throws(DriverQueueError) {
        try add(readable: readable, writable: writable, token: token)
    }

    @inline(__always)
    mutating func lockStepReap() throws(DriverQueueError) -> UsedBuffer? { try reapUsed() }
}

extension PackedDriverQueue: LockStepDriver {
    @inline(__always)
    mutating func lockStepAdd(readable: Span<BufferSegment>, writable: Span<BufferSegment>, token: UInt64) throws(DriverQueueError) {
        try add(readable: readable, writable: writable, token: token)
    }

    @inline(__always)
    mutating func lockStepReap() throws(DriverQueueError) -> UsedBuffer? { try reapUsed() }
}
