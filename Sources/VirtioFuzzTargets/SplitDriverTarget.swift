import VirtioCore

/// Fuzz target: the driver side of a split ring against a hostile device.
///
/// Input: queue size (log2), features, then operations — add chains (any number of segments,
/// direct or indirect), publish, decide on kicks, reap, toggle used-buffer notifications,
/// detach everything — interleaved with what a hostile device writes into the used ring: used
/// elements with any id and length, the used index moved anywhere, and honest completions of
/// real chains so that the ordinary path is covered too.
///
/// Checked inside: a reaped buffer is always one the caller posted and has not had back
/// (never a token twice, never an invented one), with a written length within its writable
/// capacity; a device error breaks the queue for good (the same error every time); detaching
/// returns exactly the chains outstanding; the free-descriptor count never exceeds the queue.
public enum SplitDriverTarget {
    public static func run(_ data: UnsafeRawBufferPointer) {
        var input = FuzzInput(data)
        let queueSize = 1 << (Int(input.byte()) % 9)
        let featureBits = input.byte()
        var features: VirtioFeatures = [.version1]
        if featureBits & 1 != 0 { features.insert(.indirectDescriptors) }
        if featureBits & 2 != 0 { features.insert(.eventIndex) }
        let region = GuestMemoryRegion(size: 64 * 1024)
        let layout = SplitRingLayout(queueSize: queueSize)!
        let ring = try! SplitRing(layout: layout, contiguous: region.range.slice(offset: 0, length: layout.contiguousOffsets.totalSize))
        let pool = IndirectTablePool(block: region.range.slice(offset: 0x8000, length: 0x2000), deviceAddress: 0x8000,
                                     tableCount: 32, entriesPerTable: 16)
        var driver = SplitDriverQueue(ring: ring, features: features, indirectTables: features.contains(.indirectDescriptors) ? pool : nil)
        var outstanding: [UInt64: (head: UInt16, capacity: UInt64)] = [:]
        var nextToken: UInt64 = 1
        var usedIndex: UInt16 = 0   // what the device side wrote last
        var brokenBy: DriverQueueError?
        var steps = 0
        while !input.isExhausted && steps < 1024 {
            steps += 1
            switch input.byte() % 10 {
            case 0, 1:
                let readable = (0..<Int(input.byte() % 5)).map { _ in BufferSegment(address: UInt64(input.integer(UInt16.self)), length: input.integer(UInt32.self) % 70000) }
                let writable = (0..<Int(input.byte() % 5)).map { _ in BufferSegment(address: UInt64(input.integer(UInt16.self)), length: input.bool() ? input.integer(UInt32.self) : input.integer(UInt32.self) % 70000) }
                let chainLayout: ChainLayout = [.automatic, .direct, .indirect][Int(input.byte() % 3)]
                let freeBefore = driver.freeDescriptorCount
                do {
                    let head = try driver.add(readable: readable, writable: writable, token: nextToken, layout: chainLayout)
                    fuzzCheck(Int(head) < queueSize, "head \(head) out of range")
                    fuzzCheck(!outstanding.values.contains { $0.head == head }, "head \(head) handed out twice")
                    outstanding[nextToken] = (head, writable.reduce(0) { $0 + UInt64($1.length) })
                    nextToken += 1
                } catch {
                    fuzzCheck(driver.freeDescriptorCount == freeBefore, "a refused chain took descriptors")
                    if let b = brokenBy { fuzzCheck(error == b, "a broken queue refused with \(error)") }
                }
            case 2:
                driver.publish()
                _ = driver.kickNeeded()
            case 3:
                // A hostile used element.
                let slot = Int(input.integer(UInt16.self)) & (queueSize - 1)
                let id = input.bool() ? UInt32(input.byte()) % UInt32(queueSize + 2) : input.integer(UInt32.self)
                ring.usedRing.setElement(slot, UsedElement(id: id, length: input.bool() ? input.integer(UInt32.self) : UInt32(input.byte())))
            case 4:
                // The hostile device moves the used index: a little, or anywhere.
                usedIndex = input.bool() ? usedIndex &+ UInt16(input.byte() % 4) : input.integer(UInt16.self)
                ring.usedRing.storeIndex(usedIndex)
            case 5:
                // An honest completion of an outstanding chain.
                guard let (token, chain) = outstanding.sorted(by: { $0.key < $1.key }).dropFirst(input.index(below: outstanding.count)).first else { break }
                _ = token
                let length = chain.capacity == 0 ? 0 : UInt32(truncatingIfNeeded: UInt64(input.integer(UInt32.self)) % (chain.capacity + 1))
                ring.usedRing.setElement(Int(usedIndex) & (queueSize - 1), UsedElement(id: UInt32(chain.head), length: length))
                usedIndex &+= 1
                ring.usedRing.storeIndex(usedIndex)
            case 6, 7:
                do {
                    while let used = try driver.reapUsed() {
                        guard let chain = outstanding.removeValue(forKey: used.token) else {
                            fuzzCheck(false, "reaped token \(used.token), which is not outstanding")
                            return
                        }
                        fuzzCheck(UInt64(used.writtenLength) <= chain.capacity, "written length \(used.writtenLength) over capacity \(chain.capacity)")
                    }
                } catch {
                    if let b = brokenBy { fuzzCheck(error == b, "a broken queue threw \(error), first \(b)") }
                    brokenBy = error
                    fuzzCheck(driver.isBroken && driver.failure == error, "a device error did not break the queue")
                }
            case 8:
                if input.bool() { driver.disableUsedNotifications() } else { _ = driver.enableUsedNotifications() }
            default:
                let tokens = driver.detachAllOutstanding()
                fuzzCheck(Set(tokens) == Set(outstanding.keys) && tokens.count == outstanding.count, "detached \(tokens.count), outstanding \(outstanding.count)")
                outstanding.removeAll()
                usedIndex = 0
            }
            fuzzCheck(driver.freeDescriptorCount <= queueSize, "more free descriptors than the queue has")
            if brokenBy == nil { fuzzCheck(driver.outstandingCount == outstanding.count, "outstanding: queue \(driver.outstandingCount), model \(outstanding.count)") }
        }
    }
}
