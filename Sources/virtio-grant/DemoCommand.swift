import VirtioCore

/// `virtio-grant demo`: a front-end and a back-end in one process, exchanging requests over a
/// split ring in one shared region (guest-physical translation). The back-end is a checksum
/// echo device: it answers each request with the request's FNV-1a-64 checksum followed by the
/// request bytes; the front-end verifies every byte it gets back.
struct DemoCommand {
    let requests: Int
    let json: Bool

    init(_ arguments: ArraySlice<String>) throws(UsageError) {
        let options = try Options(arguments, options: ["requests"], flags: ["json"])
        guard options.positional.isEmpty else { throw UsageError(description: "unexpected argument '\(options.positional[0])'") }
        requests = try options.int("requests", default: 20_000, in: 1...10_000_000)
        json = options.flag("json")
    }

    static func fnv1a(_ bytes: some Sequence<UInt8>) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in bytes { hash = (hash ^ UInt64(b)) &* 0x100_0000_01b3 }
        return hash
    }

    /// The deterministic payload of request `n`.
    static func payload(_ n: Int, length: Int) -> [UInt8] {
        var state = UInt64(n) &* 0x9E37_79B9_7F4A_7C15 | 1
        return (0..<length).map { _ in
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            return UInt8(truncatingIfNeeded: state)
        }
    }

    func run() -> Int32 {
        let queueSize = 256
        let slotSize = 16 * 1024
        let region = GuestMemoryRegion(size: 16 << 20)
        let layout = SplitRingLayout(queueSize: queueSize)!
        var allocator = GuestAddressAllocator(region: region)
        let ringAddress = allocator.allocate(layout.contiguousOffsets.totalSize, alignment: 4096)
        let tableBytes = IndirectTablePool.byteCount(tableCount: queueSize, entriesPerTable: 8)
        let tableAddress = allocator.allocate(tableBytes, alignment: 16)
        let payloadBase = allocator.allocate(queueSize * 2 * slotSize, alignment: 4096)
        let features: VirtioFeatures = [.version1, .indirectDescriptors, .eventIndex]
        let status = DeviceStatusCell([.acknowledge, .driver, .featuresOK, .driverOK])

        let ring = try! SplitRing(layout: layout, contiguous: region.hostRange(at: ringAddress, count: layout.contiguousOffsets.totalSize)!)
        let pool = IndirectTablePool(block: region.hostRange(at: tableAddress, count: tableBytes)!, deviceAddress: tableAddress,
                                     tableCount: queueSize, entriesPerTable: 8)
        var driver = SplitDriverQueue(ring: ring, features: features, indirectTables: pool)
        var device = try! SplitDeviceQueue(queueSize: queueSize, addresses: SplitRingAddresses(contiguousAt: ringAddress, layout: layout),
                                           memory: region.identityTranslator, features: features, statusCell: status)

        var sent = 0, completed = 0, bytesOut = 0, bytesBack = 0, kicks = 0, interrupts = 0, mismatches = 0
        var pending: [UInt64: (slot: Int, length: Int)] = [:]
        var freeSlots = Array((0..<queueSize).reversed())
        let start = monotonicSeconds()
        while completed < requests {
            // Front-end: fill the ring with requests split over 1-4 buffers.
            while sent < requests, let slot = freeSlots.popLast() {
                let length = 1 + (sent * 7919) % (slotSize / 2 - 1)
                let bytes = Self.payload(sent, length: length)
                let base = payloadBase + UInt64(slot * 2 * slotSize)
                region.write(bytes, at: base)
                let parts = 1 + sent % 4
                var readable: [BufferSegment] = []
                var offset = 0
                for p in 0..<parts {
                    let end = p == parts - 1 ? length : offset + length / parts
                    readable.append(BufferSegment(address: base + UInt64(offset), length: UInt32(end - offset)))
                    offset = end
                }
                let reply = base + UInt64(slotSize)
                let writable = [BufferSegment(address: reply, length: 8), BufferSegment(address: reply + 8, length: UInt32(slotSize - 8))]
                do {
                    try driver.add(readable: readable, writable: writable, token: UInt64(sent))
                } catch {
                    freeSlots.append(slot)
                    break
                }
                pending[UInt64(sent)] = (slot, length)
                bytesOut += length
                sent += 1
            }
            driver.publish()
            if driver.kickNeeded() { kicks += 1 }
            // Back-end: the checksum echo device.
            do {
                // Drain, then re-arm the kick and check again (ANS-DEV: no lost kick).
                repeat {
                    while let chain = try device.popAvailable() {
                        var reader = device.reader(for: chain)
                        let request = try reader.readBytes(reader.remaining)
                        var writer = device.writer(for: chain)
                        try writer.write(Self.fnv1a(request))
                        try writer.write(contentsOf: request)
                        device.addUsed(chain, length: writer.usedLength)
                    }
                } while device.enableNotifications()
            } catch {
                print("back-end: \(error)")
                return 1
            }
            device.publishUsed()
            if device.needsNotification() { interrupts += 1 }
            // Front-end: verify every byte.
            do {
                while let used = try driver.reapUsed() ?? (driver.enableUsedNotifications() ? driver.reapUsed() : nil) {
                    guard let (slot, length) = pending.removeValue(forKey: used.token) else { return 1 }
                    let reply = payloadBase + UInt64(slot * 2 * slotSize + slotSize)
                    let expected = Self.payload(Int(used.token), length: length)
                    let checksum = region.read(at: reply, count: 8).reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
                    if Int(used.writtenLength) != 8 + length || checksum != Self.fnv1a(expected)
                        || region.read(at: reply + 8, count: length) != expected {
                        mismatches += 1
                    }
                    bytesBack += Int(used.writtenLength)
                    freeSlots.append(slot)
                    completed += 1
                }
            } catch {
                print("front-end: \(error)")
                return 1
            }
        }
        let elapsed = monotonicSeconds() - start
        let ok = mismatches == 0 && !status.status.contains(.deviceNeedsReset)
        if json {
            var line = JSONLine()
            line.add("demo", "in-process")
            line.add("requests", completed)
            line.add("bytes_out", bytesOut)
            line.add("bytes_back", bytesBack)
            line.add("kicks", kicks)
            line.add("interrupts", interrupts)
            line.add("mismatches", mismatches)
            line.add("seconds", elapsed, decimals: 3)
            line.add("ok", ok)
            print(line.text)
        } else {
            print("""
                VirtioGrant in-process demo: one split queue (256 entries, INDIRECT_DESC + EVENT_IDX),
                guest-physical translation, a checksum echo device.
                  requests      \(completed) (each split over 1-4 readable buffers; multi-buffer ones through indirect tables)
                  sent          \(bytesOut) bytes; received \(bytesBack) bytes (checksum + echo)
                  kicks         \(kicks) front-end to back-end, \(interrupts) back-end to front-end (event index)
                  verified      \(completed - mismatches) of \(completed) replies byte for byte
                  time          \(JSONLine.format(elapsed, decimals: 3)) s
                  result        \(ok ? "OK" : "FAILED")
                """)
        }
        return ok ? 0 : 1
    }
}
