import Synchronization
import Testing
import VirtioCore
import VirtioGrants

@Suite("Grant table: granting and mapping sides", .tags(.grants))
struct GrantTableTests {
    @Test("GHT-GNT-01: grant_entry_v1 layout and GTF flag values")
    func entryLayout() throws {
        let h = GrantHarness()
        let ref = try h.table.grant(frame: 0xAB, to: GrantHarness.backEnd, readOnly: true)
        let offset = Int(ref.rawValue) * 8
        #expect(h.tableRegion.read(at: UInt64(offset), count: 8) == [0x05, 0x00, 0x00, 0x00, 0xAB, 0x00, 0x00, 0x00])
        #expect(GrantFlags.permitAccess.rawValue == 1 && GrantFlags.readOnly.rawValue == 4)
        #expect(GrantFlags.reading.rawValue == 8 && GrantFlags.writing.rawValue == 0x10)
        #expect(ref.rawValue >= UInt32(GrantReference.reservedCount), "references 0-7 are reserved")
    }

    @Test("GHT-HDL-01: handle encoding is bit 63, reference in bits 62-12, offset in bits 11-0")
    func handleEncoding() {
        let h = GrantHandle(reference: GrantReference(0x1_2345), offset: 0xABC)
        #expect(h.rawValue == 0x8000_0000_1234_5ABC)
        #expect(h.isGrantHandle && h.reference == GrantReference(0x1_2345) && h.offset == 0xABC)
        #expect(h.advanced(by: 0x544).reference == GrantReference(0x1_2346))
        #expect(h.advanced(by: 0x544).offset == 0)
        #expect(!GrantHandle(rawValue: 0x1000).isGrantHandle)
        #expect(GrantHandle(rawValue: 0xFFFF_FFFF_FFFF_FFFF).reference == nil, "a reference beyond 32 bits")
        #expect(h.pageCount(length: 0x544) == 1 && h.pageCount(length: 0x545) == 2)
    }

    @Test("GHT-GNT-02: a multi-page buffer gets consecutive references")
    func consecutive() throws {
        let h = GrantHarness()
        let first = try h.table.grant(frames: [10, 3, 77], to: GrantHarness.backEnd, readOnly: false)
        for (i, frame) in [UInt32(10), 3, 77].enumerated() {
            let m = try h.mapper.map(first.advanced(by: i), access: .write)
            #expect(m.page.startAddress == h.frames.range.startAddress + UInt(frame) * 4096)
            try h.mapper.unmap(m)
        }
    }

    @Test("GHT-GNT-03: end of access while the peer maps reports busy; the reference is not reused")
    func endWhileMapped() throws {
        let h = GrantHarness()
        let ref = try h.table.grant(frame: 4, to: GrantHarness.backEnd, readOnly: false)
        let m = try h.mapper.map(ref, access: .read)
        #expect(try h.table.endAccess(ref) == .busy)
        #expect(h.table.entry(ref).flags.contains(.permitAccess), "still granted")
        // The page is never handed out again early: new grants get other references.
        var others: Set<GrantReference> = []
        for f in 0..<100 { others.insert(try h.table.grant(frame: UInt32(f), to: GrantHarness.backEnd, readOnly: true)) }
        #expect(!others.contains(ref))
        try h.mapper.unmap(m)
        #expect(try h.table.endAccess(ref) == .ended)
        #expect(h.table.entry(ref) == GrantEntry(flags: [], domain: DomainID(0), frame: 4))
        #expect(throws: GrantFault.notGranted(ref)) { _ = try h.mapper.map(ref, access: .read) }
        #expect(throws: GrantTableError.notGranted(ref)) { _ = try h.table.endAccess(ref) }
    }

    @Test("GHT-GNT-14: a reference free in the front-end's records whose entry shows a mapping is not granted (found by the grants fuzz target)")
    func inUseEntryNotReused() throws {
        let h = GrantHarness(frameCount: 16, tableEntries: 16)
        // Entry 9 was mapped by the back-end through a grant this table object does not know of.
        h.table.entries.store(GrantEntry(flags: [.permitAccess, .readOnly, .reading], domain: GrantHarness.backEnd, frame: 7), at: GrantReference(9))
        let first = try h.table.grant(frame: 1, to: GrantHarness.backEnd, readOnly: false)
        #expect(first == GrantReference(8))
        let run = try h.table.grant(frames: [2, 3], to: GrantHarness.backEnd, readOnly: false)
        #expect(run == GrantReference(10), "the run skips 9")
        #expect(h.table.entry(GrantReference(9)).flags.contains(.reading), "entry 9 untouched")
        for f in 4..<8 { #expect(try h.table.grant(frame: UInt32(f), to: GrantHarness.backEnd, readOnly: true) != GrantReference(9)) }
        #expect(throws: GrantTableError.tableFull(requested: 1)) { _ = try h.table.grant(frame: 9, to: GrantHarness.backEnd, readOnly: true) }
        // Once the in-use bit is gone, the reference is free again.
        h.table.entries.store(GrantEntry(flags: [], domain: DomainID(0), frame: 0), at: GrantReference(9))
        #expect(try h.table.grant(frame: 9, to: GrantHarness.backEnd, readOnly: true) == GrantReference(9))
    }

    @Test("GHT-GNT-04: the in-use bit of a kind is cleared only by the last unmap of that kind")
    func lastUnmapClears() throws {
        let h = GrantHarness()
        let ref = try h.table.grant(frame: 1, to: GrantHarness.backEnd, readOnly: false)
        let r1 = try h.mapper.map(ref, access: .read)
        let r2 = try h.mapper.map(ref, access: .read)
        let w1 = try h.mapper.map(ref, access: .write)
        #expect(h.table.entry(ref).flags.isSuperset(of: [.reading, .writing]))
        try h.mapper.unmap(r1)
        #expect(h.table.entry(ref).flags.contains(.reading))
        try h.mapper.unmap(w1)
        #expect(!h.table.entry(ref).flags.contains(.writing))
        #expect(h.table.entry(ref).flags.contains(.reading))
        #expect(try h.table.endAccess(ref) == .busy)
        try h.mapper.unmap(r2)
        #expect(h.table.entry(ref).flags.isDisjoint(with: .inUse))
        #expect(try h.table.endAccess(ref) == .ended)
    }

    @Test("GHT-GNT-05: a double unmap is refused and never underflows another mapping's count")
    func doubleUnmap() throws {
        let h = GrantHarness()
        let ref = try h.table.grant(frame: 1, to: GrantHarness.backEnd, readOnly: false)
        let a = try h.mapper.map(ref, access: .read)
        let b = try h.mapper.map(ref, access: .read)
        try h.mapper.unmap(a)
        #expect(throws: GrantFault.notMapped(ref)) { try h.mapper.unmap(a) }
        #expect(h.mapper.mappingCount(ref).readers == 1)
        #expect(h.table.entry(ref).flags.contains(.reading), "b still holds the page")
        try h.mapper.unmap(b)
        #expect(throws: GrantFault.notMapped(ref)) { try h.mapper.unmap(b) }
        #expect(h.mapper.mappingCount(ref).readers == 0)
    }

    @Test("GHT-GNT-06, IOM-DEV-05, IOM-DEV-01: entries that do not permit this access are refused, each with its own fault")
    func refusals() throws {
        let h = GrantHarness(frameCount: 16)
        let other = try h.table.grant(frame: 1, to: DomainID(7), readOnly: false)
        #expect(throws: GrantFault.wrongDomain(other, grantee: DomainID(7))) { _ = try h.mapper.map(other, access: .read) }
        let ro = try h.table.grant(frame: 2, to: GrantHarness.backEnd, readOnly: true)
        #expect(throws: GrantFault.readOnly(ro)) { _ = try h.mapper.map(ro, access: .write) }
        let m = try h.mapper.map(ro, access: .read)
        try h.mapper.unmap(m)
        #expect(throws: GrantFault.notGranted(GrantReference(300))) { _ = try h.mapper.map(GrantReference(300), access: .read) }
        #expect(throws: GrantFault.badReference(GrantReference(512))) { _ = try h.mapper.map(GrantReference(512), access: .read) }
        // A hostile granter writes entries the mapper must refuse.
        let entries = UnsafeGrantTable(h.tableRegion.range)
        entries.store(GrantEntry(flags: .permitAccess, domain: GrantHarness.backEnd, frame: 16), at: GrantReference(20))
        #expect(throws: GrantFault.frameOutOfRange(GrantReference(20), frame: 16)) { _ = try h.mapper.map(GrantReference(20), access: .read) }
        entries.store(GrantEntry(flags: .transitive, domain: GrantHarness.backEnd, frame: 1), at: GrantReference(21))
        #expect(throws: GrantFault.unsupported(GrantReference(21), flags: 3)) { _ = try h.mapper.map(GrantReference(21), access: .read) }
        entries.store(GrantEntry(flags: [.permitAccess, .subPage], domain: GrantHarness.backEnd, frame: 1), at: GrantReference(22))
        #expect(throws: GrantFault.unsupported(GrantReference(22), flags: 0x101)) { _ = try h.mapper.map(GrantReference(22), access: .read) }
    }

    @Test("GHT-GNT-07: the granting side refuses frames outside its region and grants to itself")
    func grantingRefusals() {
        let h = GrantHarness(frameCount: 16)
        #expect(throws: GrantTableError.frameOutOfRange(16)) { _ = try h.table.grant(frame: 16, to: GrantHarness.backEnd, readOnly: false) }
        #expect(throws: GrantTableError.selfGrant) { _ = try h.table.grant(frame: 1, to: GrantHarness.frontEnd, readOnly: false) }
    }

    @Test("GHT-GNT-08: exhaustion and per-peer quotas are typed errors; nothing is reused silently")
    func exhaustionAndQuota() throws {
        let h = GrantHarness(tableEntries: 24)
        h.table.setQuota(10, for: DomainID(5))
        for f in 0..<10 { _ = try h.table.grant(frame: UInt32(f), to: DomainID(5), readOnly: true) }
        #expect(throws: GrantTableError.quotaExceeded(peer: DomainID(5), limit: 10)) {
            _ = try h.table.grant(frame: 1, to: DomainID(5), readOnly: true)
        }
        var refs: [GrantReference] = []
        for f in 0..<6 { refs.append(try h.table.grant(frame: UInt32(f), to: GrantHarness.backEnd, readOnly: true)) }
        #expect(throws: GrantTableError.tableFull(requested: 1)) { _ = try h.table.grant(frame: 1, to: GrantHarness.backEnd, readOnly: true) }
        #expect(Set(refs).count == 6 && h.table.grantCount(for: GrantHarness.backEnd) == 6)
        #expect(try h.table.endAccess(refs[2]) == .ended)
        #expect(try h.table.grant(frame: 9, to: GrantHarness.backEnd, readOnly: true) == refs[2])
        #expect(throws: GrantTableError.tableFull(requested: 2)) { _ = try h.table.grant(frames: [1, 2], to: GrantHarness.backEnd, readOnly: true) }
    }

    @Test("GHT-GNT-09: busy grants go to a bounded, observable deferred list and are released once unmapped")
    func deferredRelease() throws {
        let h = GrantHarness(deferredCapacity: 2)
        var mapped: [GrantMapping] = []
        var refs: [GrantReference] = []
        for f in 0..<3 {
            let ref = try h.table.grant(frame: UInt32(f), to: GrantHarness.backEnd, readOnly: false)
            refs.append(ref)
            mapped.append(try h.mapper.map(ref, access: .write))
        }
        #expect(try h.table.endAccessOrDefer(refs[0]) == .deferred)
        #expect(try h.table.endAccessOrDefer(refs[1]) == .deferred)
        #expect(throws: GrantTableError.deferredListFull(refs[2])) { _ = try h.table.endAccessOrDefer(refs[2]) }
        #expect(h.table.deferredReferences == [refs[0], refs[1]])
        #expect(h.table.retryDeferred().isEmpty)
        try h.mapper.unmap(mapped[1])
        #expect(h.table.retryDeferred() == [refs[1]])
        #expect(h.table.deferredReferences == [refs[0]])
        #expect(!h.table.isAllocated(refs[1]) && h.table.isAllocated(refs[0]))
        #expect(h.table.statistics.deferred == 2)
    }

    @Test("GHT-GNT-10, XSA-361: batched map, unmap and copy give a result per element")
    func batches() throws {
        let h = GrantHarness()
        let good = try h.table.grant(frame: 1, to: GrantHarness.backEnd, readOnly: true)
        let bad = GrantReference(400)
        let results = h.mapper.map(batch: [GrantMapRequest(good, access: .read), GrantMapRequest(bad, access: .read),
                                           GrantMapRequest(good, access: .write), GrantMapRequest(good, access: .read)])
        #expect(results.map { (try? $0.get()) != nil } == [true, false, false, true])
        #expect(throws: GrantFault.notGranted(bad)) { try results[1].get() }
        #expect(throws: GrantFault.readOnly(good)) { try results[2].get() }
        #expect(h.mapper.mappingCount(good).readers == 2)
        let mappings = results.compactMap { try? $0.get() }
        let unmaps = h.mapper.unmap(batch: mappings + [mappings[0]])
        #expect(unmaps.map { (try? $0.get()) != nil } == [true, true, false])
        #expect(h.mapper.mappingCount(good).readers == 0)
    }

    @Test("GHT-GNT-11: copies move bytes without keeping a mapping; zero-length and page-crossing fragments")
    func copies() throws {
        let h = GrantHarness()
        let ref = try h.table.grant(frames: [20, 21], to: GrantHarness.backEnd, readOnly: false)
        var out = [UInt8](repeating: 0, count: 6)
        try ([1, 2, 3, 4, 5, 6] as [UInt8]).withUnsafeBytes { src in
            try h.mapper.copy(GrantCopy(ref, offset: 100, .toGrant(src)))
        }
        try out.withUnsafeMutableBytes { dst in try h.mapper.copy(GrantCopy(ref, offset: 100, .fromGrant(dst))) }
        #expect(out == [1, 2, 3, 4, 5, 6])
        #expect(h.mapper.mappingCount(ref) == (0, 0), "no mapping kept")
        #expect(h.table.entry(ref).flags.isDisjoint(with: .inUse))
        // Zero length: succeeds without touching the grant, even an ungranted one.
        try [UInt8]().withUnsafeBytes { try h.mapper.copy(GrantCopy(GrantReference(450), offset: 0, .toGrant($0))) }
        // A fragment may not cross the page ...
        #expect(throws: GrantFault.badCopy(ref, offset: 4094, length: 6)) {
            try [UInt8](repeating: 9, count: 6).withUnsafeBytes { try h.mapper.copy(GrantCopy(ref, offset: 4094, .toGrant($0))) }
        }
        // ... but a handle-addressed copy continues into the next reference.
        try ([7, 7, 7, 7, 7, 7] as [UInt8]).withUnsafeBytes { try h.mapper.copy(to: GrantHandle(reference: ref, offset: 4094), from: $0) }
        #expect(h.frames.read(at: h.address(ofFrame: 20) + 4094, count: 2) == [7, 7])
        #expect(h.frames.read(at: h.address(ofFrame: 21), count: 4) == [7, 7, 7, 7])
        // ... and fails on a continuation that is not granted.
        let lone = try h.table.grant(frame: 30, to: GrantHarness.backEnd, readOnly: false)
        #expect(throws: GrantFault.notGranted(lone.advanced(by: 1))) {
            try [UInt8](repeating: 1, count: 8).withUnsafeBytes { try h.mapper.copy(to: GrantHandle(reference: lone, offset: 4092), from: $0) }
        }
        let results = [UInt8](repeating: 1, count: 4).withUnsafeBytes { src in
            h.mapper.copy(batch: [GrantCopy(ref, offset: 0, .toGrant(src)), GrantCopy(GrantReference(451), offset: 0, .toGrant(src)),
                                  GrantCopy(ref, offset: 0, .toGrant(UnsafeRawBufferPointer(rebasing: src[0..<0])))])
        }
        #expect(results.map { (try? $0.get()) != nil } == [true, false, true])
    }

    @Test("GHT-GNT-12: map and end of access racing on one entry never both succeed")
    func mapEndRace() throws {
        let h = GrantHarness()
        let rounds = 2000
        let anomalies = Counter()
        for _ in 0..<rounds {
            let ref = try h.table.grant(frame: 3, to: GrantHarness.backEnd, readOnly: false)
            let mapped = Counter(), ended = Counter()
            let mapper = h.mapper, table = h.table
            let t = Thread {
                if let m = try? mapper.map(ref, access: .write) {
                    mapped.increment()
                    // A successful map after a successful end would be a page handed to the
                    // peer after the granter took it back.
                    if ended.value > 0 { anomalies.increment() }
                    try? mapper.unmap(m)
                }
            }
            if (try? table.endAccess(ref)) == .ended {
                ended.increment()
                if mapper.mappingCount(ref) != (0, 0) { anomalies.increment() }
            }
            t.join()
            // The map won: end reported busy; end once more now that it is unmapped.
            if ended.value == 0 {
                let didMap = mapped.value
                #expect(didMap == 1)
                #expect(try table.endAccess(ref) == .ended)
            }
        }
        let total = anomalies.value
        #expect(total == 0)
    }

    @Test("GHT-GNT-13: the mapper decides on one snapshot while a hostile granter flips the entry")
    func singleSnapshot() throws {
        let h = GrantHarness(frameCount: 16)
        let ref = GrantReference(40)
        let entries = UnsafeGrantTable(h.tableRegion.range)
        // Only the first state permits this domain to write, and only to frame 5.
        let states = [GrantEntry(flags: .permitAccess, domain: GrantHarness.backEnd, frame: 5),
                      GrantEntry(flags: .permitAccess, domain: DomainID(9), frame: 7),
                      GrantEntry(flags: [.permitAccess, .readOnly], domain: GrantHarness.backEnd, frame: 9),
                      GrantEntry(flags: .permitAccess, domain: GrantHarness.backEnd, frame: 100_000)]
        entries.store(states[0], at: ref)
        let stop = Counter()
        let flipper = Thread {
            var i = 0
            while stop.value == 0 {
                i += 1
                // Keep the in-use bits the mapper set: a granter that wipes them is another test.
                let current = entries.load(ref).flags.intersection(.inUse)
                var next = states[i % states.count]
                next.flags.formUnion(current)
                entries.store(next, at: ref)
            }
        }
        var successes = 0
        for _ in 0..<20000 {
            do {
                let m = try h.mapper.map(ref, access: .write)
                #expect(m.page.startAddress == h.frames.range.startAddress + 5 * 4096)
                successes += 1
                try h.mapper.unmap(m)
            } catch {
                switch error {
                case .wrongDomain, .readOnly, .frameOutOfRange, .contended: break
                default: Issue.record("unexpected \(error)")
                }
            }
        }
        stop.increment()
        flipper.join()
        // Whatever interleaving the machine produced, every success above was frame 5 for write.
        _ = successes
    }
}

/// A minimal joinable thread over pthreads (no Foundation).
final class Thread: @unchecked Sendable {
    private var thread = pthread_t()
    private let body: @Sendable () -> Void

    init(_ body: @escaping @Sendable () -> Void) {
        self.body = body
        let box = Unmanaged.passRetained(self)
        pthread_create(&thread, nil, { raw in
            let me = Unmanaged<Thread>.fromOpaque(raw!).takeRetainedValue()
            me.body()
            return nil
        }, box.toOpaque())
    }

    func join() { pthread_join(thread, nil) }
}

/// An atomic counter shared with threads.
final class Counter: Sendable {
    private let storage = Atomic<Int>(0)
    func increment() { storage.add(1, ordering: .sequentiallyConsistent) }
    var value: Int { storage.load(ordering: .sequentiallyConsistent) }
}

#if canImport(Glibc)
import Glibc
#endif
import VirtioConformance
