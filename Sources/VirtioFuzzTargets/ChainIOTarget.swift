import VirtioCore
import VirtioGrants

/// Fuzz target: the chain reader and writer, and resolution into fragments, against a
/// reference copy.
///
/// Input: the translation mode (guest-physical, or grant handles through an IOTLB with pages
/// granted read-only, read-write or not at all), then chains of arbitrary segment layouts —
/// up to five readable and five writable segments of any length (zero included) at any offset,
/// crossing pages, direct or through an indirect table — each followed by the split points of
/// the reads and writes.
///
/// Checked inside: the reader yields exactly the bytes of the readable segments in order, at
/// every split, and faults exactly when a segment reaches a page the device may not read; the
/// writer puts the bytes exactly in the writable segments and never writes a page granted
/// read-only; the fragment reader and writer (the device's batch view) agree with both.
public enum ChainIOTarget {
    static let pages = 10
    static let firstPayloadPage = 2

    public static func run(_ data: UnsafeRawBufferPointer) {
        var input = FuzzInput(data)
        let grantMode = input.bool()
        let readOnlyPages = input.integer(UInt16.self), ungrantedPages = input.integer(UInt16.self) & 0x7FFC
        let region = GuestMemoryRegion(size: pages * GrantHandle.pageSize)
        let layout = SplitRingLayout(queueSize: 16)!
        let ring = try! SplitRing(layout: layout, contiguous: region.range.slice(offset: 0, length: 4096))
        let features: VirtioFeatures = [.version1, .indirectDescriptors, .accessPlatform]
        if grantMode {
            let tableMemory = GuestMemoryRegion(size: 64 * GrantEntry.size)
            let grants = GrantTable(table: tableMemory.range, domain: DomainID(1), frameCount: pages)
            let mapper = GrantMapper(table: tableMemory.range, granter: DomainID(1), frames: region.range, domain: DomainID(0), owners: [tableMemory, region])
            // Reference r (from 8) grants frame r - 8; pages in `ungrantedPages` get no grant.
            var refOfPage: [Int: GrantReference] = [:]
            for page in 1..<pages {
                let ref = try! grants.grant(frame: UInt32(page), to: DomainID(0), readOnly: page == 1 || readOnlyPages & (1 << page) != 0)
                refOfPage[page] = ref
                if ungrantedPages & (1 << page) != 0 { _ = try! grants.endAccess(ref) }
            }
            // A 4-entry cache conflicts on almost every page; a chain's evicted mappings stay
            // parked until its quiescent point (GHT-DMA-01), so the list holds a chain's worth.
            let iotlb = GrantIOTLB(mapper: mapper, capacity: 4, parkingCapacity: 256)
            let scenario = Scenario(region: region, ring: ring, features: features, tableAddress: GrantHandle(reference: refOfPage[1]!).rawValue,
                                    address: { page, offset in GrantHandle(reference: refOfPage[page]!, offset: offset).rawValue },
                                    readable: { page in page < pages && ungrantedPages & (1 << page) == 0 },
                                    writable: { page in page < pages && ungrantedPages & (1 << page) == 0 && readOnlyPages & (1 << page) == 0 })
            scenario.run(&input, memory: iotlb.translator, quiesce: iotlb.quiesce)
            withExtendedLifetime((grants, iotlb)) {}
        } else {
            let scenario = Scenario(region: region, ring: ring, features: features, tableAddress: UInt64(GrantHandle.pageSize),
                                    address: { page, offset in UInt64(page * GrantHandle.pageSize + offset) },
                                    readable: { page in page < pages }, writable: { page in page < pages })
            scenario.run(&input, memory: region.identityTranslator)
        }
    }

    /// One run: where things are and what the device may do with each page.
    struct Scenario {
        let region: GuestMemoryRegion
        let ring: SplitRing
        let features: VirtioFeatures
        let tableAddress: UInt64
        /// The device-visible address of byte `offset` of payload page `page`.
        let address: (Int, Int) -> UInt64
        let readable: (Int) -> Bool
        let writable: (Int) -> Bool

        /// A payload segment: where it starts (byte offset in the region) and its length.
        struct Piece { var start: Int; var length: Int }

        /// Serves chains one by one, passing `quiesce` (the queue's quiescent point) after each.
        func run<Memory: MemoryTranslator>(_ input: inout FuzzInput, memory: Memory, quiesce: () -> Void = {}) {
            let pool = IndirectTablePool(block: region.range.slice(offset: GrantHandle.pageSize, length: GrantHandle.pageSize),
                                         deviceAddress: tableAddress, tableCount: 16, entriesPerTable: 16)
            var driver = SplitDriverQueue(ring: ring, features: features, indirectTables: pool)
            var device = SplitDeviceQueue(ring: ring, memory: memory, features: features)
            var resolver = ChainResolver()
            var chains = 0
            let payloadSize = (ChainIOTarget.pages - ChainIOTarget.firstPayloadPage) * GrantHandle.pageSize
            region.write((0..<payloadSize).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 8) }, at: UInt64(ChainIOTarget.firstPayloadPage * GrantHandle.pageSize))
            while !input.isExhausted && chains < 16 {
                chains += 1
                let readableCount = Int(input.byte() % 6), writableCount = Int(input.byte() % 6)
                let readable = (0..<readableCount).map { _ in piece(&input) }
                let writable = (0..<writableCount).map { _ in piece(&input) }
                let chainLayout: ChainLayout = [.automatic, .direct, .indirect][Int(input.byte() % 3)]
                do {
                    try driver.add(readable: readable.map(segment), writable: writable.map(segment), token: UInt64(chains), layout: chainLayout)
                } catch {
                    fuzzCheck(readableCount + writableCount == 0 || chainLayout == .indirect || error == .queueFull, "a valid chain was refused: \(error)")
                    continue
                }
                driver.publish()
                guard let chain = try? device.popAvailable() else {
                    fuzzCheck(false, "the device refused a chain the driver built")
                    return
                }
                fuzzCheck(chain.readableLength == UInt64(readable.reduce(0) { $0 + $1.length })
                          && chain.writableLength == UInt64(writable.reduce(0) { $0 + $1.length }), "chain lengths")
                checkReader(device.reader(for: chain), readable, &input)
                let overlap = overlaps(readable + writable)
                checkWriter(device.writer(for: chain), writable, &input, checkContent: !overlap)
                resolver.removeAll()
                checkResolved(&resolver, chain, memory, readable, writable)
                device.addUsed(chain, length: 0)
                device.publishUsed()
                quiesce()
                _ = try? driver.reapUsed()
            }
        }

        func piece(_ input: inout FuzzInput) -> Piece {
            let payload = (ChainIOTarget.pages - ChainIOTarget.firstPayloadPage) * GrantHandle.pageSize
            let start = ChainIOTarget.firstPayloadPage * GrantHandle.pageSize + Int(input.integer(UInt16.self)) % payload
            let length = input.byte() % 4 == 0 ? 0 : Int(input.integer(UInt16.self)) % 9000
            return Piece(start: start, length: min(length, ChainIOTarget.pages * GrantHandle.pageSize - start))
        }

        func segment(_ p: Piece) -> BufferSegment {
            BufferSegment(address: address(p.start / GrantHandle.pageSize, p.start % GrantHandle.pageSize), length: UInt32(p.length))
        }

        /// Whether the device may reach every page of `p` with the access.
        func reachable(_ p: Piece, write: Bool) -> Bool {
            guard p.length > 0 else { return true }
            return (p.start / GrantHandle.pageSize...(p.start + p.length - 1) / GrantHandle.pageSize).allSatisfy { write ? writable($0) : readable($0) }
        }

        func bytes(_ p: Piece) -> [UInt8] { region.read(at: UInt64(p.start), count: p.length) }

        func overlaps(_ pieces: [Piece]) -> Bool {
            let ranges = pieces.filter { $0.length > 0 }
            for (i, a) in ranges.enumerated() {
                for b in ranges[(i + 1)...] where a.start < b.start + b.length && b.start < a.start + a.length { return true }
            }
            return false
        }

        func checkReader<Memory: MemoryTranslator>(_ r: ChainReader<Memory>, _ readable: [Piece], _ input: inout FuzzInput) {
            var reader = r
            let reachable = readable.allSatisfy { self.reachable($0, write: false) }
            let expected = readable.flatMap(bytes)
            var got: [UInt8] = []
            var faulted = false
            while reader.remaining > 0 {
                let want = 1 + Int(input.integer(UInt16.self) % 5000)
                if input.byte() % 5 == 0 {
                    got += expected[got.count..<(got.count + reader.skip(want))]
                    continue
                }
                do {
                    got += try reader.readBytes(min(want, reader.remaining))
                } catch {
                    faulted = true
                    break
                }
            }
            if reachable {
                fuzzCheck(!faulted && got == expected, "the reader's bytes differ from the segments'")
            } else {
                fuzzCheck(faulted || got.count == expected.count, "no fault reading an unreachable page")
                fuzzCheck(expected.starts(with: got), "the reader's bytes before the fault differ")
            }
        }

        func checkWriter<Memory: MemoryTranslator>(_ w: ChainWriter<Memory>, _ writable: [Piece], _ input: inout FuzzInput, checkContent: Bool) {
            var writer = w
            let reachable = writable.allSatisfy { self.reachable($0, write: true) }
            let total = writable.reduce(0) { $0 + $1.length }
            let pattern = (0..<total).map { UInt8(truncatingIfNeeded: ($0 &* 13) ^ 0x5A) }
            let protected = (0..<ChainIOTarget.pages).filter { !self.writable($0) }.map { region.read(at: UInt64($0 * GrantHandle.pageSize), count: GrantHandle.pageSize) }
            var at = 0
            var faulted = false
            while at < total {
                let n = min(total - at, 1 + Int(input.integer(UInt16.self) % 5000))
                do {
                    try writer.write(contentsOf: Array(pattern[at..<(at + n)]))
                } catch {
                    faulted = true
                    break
                }
                at += n
            }
            // A fault may come in the middle of a write: the bytes before it are written and counted.
            fuzzCheck((faulted ? writer.bytesWritten >= at : writer.bytesWritten == at) && writer.bytesWritten <= total, "bytes written")
            fuzzCheck(reachable || faulted || total == 0, "no fault writing an unwritable page")
            if reachable && checkContent {
                fuzzCheck(writable.flatMap(bytes) == pattern, "the writer's bytes are not in the writable segments")
            }
            let after = (0..<ChainIOTarget.pages).filter { !self.writable($0) }.map { region.read(at: UInt64($0 * GrantHandle.pageSize), count: GrantHandle.pageSize) }
            fuzzCheck(after == protected, "the writer wrote a page the device may not write")
        }

        func checkResolved<Memory: MemoryTranslator>(_ resolver: inout ChainResolver, _ chain: DescriptorChain, _ memory: Memory,
                                                    _ readable: [Piece], _ writable: [Piece]) {
            let reachable = readable.allSatisfy { self.reachable($0, write: false) } && writable.allSatisfy { self.reachable($0, write: true) }
            do {
                let (r, w) = try resolver.resolve(chain, through: memory)
                fuzzCheck(reachable, "resolved a chain with an unreachable page")
                var reader = FragmentReader(resolver.fragments, r)
                fuzzCheck((try? reader.readBytes(reader.remaining)) == readable.flatMap(bytes), "fragment bytes differ")
                fuzzCheck(FragmentWriter(resolver.fragments, w).capacity == writable.reduce(0) { $0 + $1.length }, "fragment capacity")
            } catch {
                fuzzCheck(!reachable, "a reachable chain did not resolve: \(error)")
            }
        }
    }
}
