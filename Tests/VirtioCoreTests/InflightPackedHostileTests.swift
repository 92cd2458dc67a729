import Testing
import VirtioConformance
import VirtioCore

/// The packed in-flight area as a hostile front-end can write it (Spec/restart.md §1,
/// GHT-INF-15): every field, link and copy is checked before a queue believes it.
@Suite("In-flight tracking: a hostile packed area", .tags(.ring, .hostile))
struct InflightPackedHostileTests {
    typealias Area = InflightPackedTests.Area
    typealias T = InflightPackedTests

    /// A recorded area for a ring of 8: request 0 (3 descriptors, entries 0–2) and request 1
    /// (1 descriptor, entry 3) in flight, counters 0 and 1.
    static func recorded(_ h: inout PackedRingHarness) throws -> Area {
        let area = Area(queueSize: 8)
        try h.device.trackInflight(in: area.range)
        try T.add(&h, 0, writable: 2)
        try T.add(&h, 1, writable: 0)
        #expect(try T.popAll(&h.device).count == 2)
        #expect(area.inFlight == [0, 3])
        return area
    }

    /// The defect a new queue over the corrupted area breaks with, or nil if it resumes.
    static func defect(_ corrupt: (UnsafeInflightPacked) -> Void) throws -> InflightRegionDefect? {
        try defectOf { corrupt($0.view) }
    }

    static func defectOf(_ corrupt: (Area) -> Void) throws -> InflightRegionDefect? {
        var h = T.harness()
        let area = try Self.recorded(&h)
        corrupt(area)
        var queue = T.Queue(ring: h.ring, memory: h.device.memory, features: T.features, statusCell: h.status)
        do {
            try queue.trackInflight(in: area.range)
            return nil
        } catch {
            guard case .inflightRegion(let defect) = error else { Issue.record("\(error)"); return nil }
            // The queue broke: nothing is resubmitted, every pop rethrows.
            #expect(queue.pendingResubmissions == 0 && queue.isBroken)
            #expect(throws: VirtqueueError.inflightRegion(defect)) { _ = try queue.popAvailable() }
            #expect(h.status.status.contains(.deviceNeedsReset))
            return defect
        }
    }

    static func descriptor(_ v: UnsafeInflightPacked, _ i: Int, _ change: (inout PackedDescriptor) -> Void) {
        var d = v.descriptor(i)
        change(&d)
        v.setDescriptor(i, d)
    }

    @Test("GHT-INF-15: the header is checked: version, desc_num, positions and wrap counters; each refusal names the field")
    func header() throws {
        #expect(try Self.defect { $0.version = 2 } == .version(2))
        #expect(try Self.defect { $0.descriptorCount = 16 } == .descriptorCount(16, queueSize: 8))
        #expect(try Self.defect { $0.setUsed(PackedRingPosition(slot: 9, wrapCounter: true), committed: .start) } == .position(9))
        #expect(try Self.defect { $0.setUsed(.start, committed: PackedRingPosition(rawValue: 0x7FFF)) } == .position(0x7FFF))
        // A wrap counter byte of 2 (byte 20 of the header).
        #expect(try Self.defectOf { $0.range.base.storeBytes(of: UInt8(2), toByteOffset: 20, as: UInt8.self) } == .position(2))
        #expect(try Self.defect { _ in } == nil, "the untouched area resumes")
    }

    @Test("GHT-INF-15: links are bounded and acyclic: a free list that loops, a chain that leaves the ring, two chains sharing an entry, a chain through a free entry, a last that is not the num-th entry")
    func links() throws {
        #expect(try Self.defect { v in v.setNext(7, 5) } == .listLink(5), "the free list loops")
        #expect(try Self.defect { v in v.setNext(0, 200) } == .listLink(200), "a chain leaves the ring")
        #expect(try Self.defect { v in v.setNext(1, 5) } == .listLink(5), "a chain runs into the free list")
        #expect(try Self.defect { v in v.setHead(1, inflight: 1, next: 2, last: 1, num: 1) } == .listLink(1), "two chains share an entry")
        #expect(try Self.defect { v in v.setHead(0, inflight: 1, next: 1, last: 1, num: 3) } == .entry(index: 0), "last is not the num-th entry")
    }

    @Test("GHT-INF-15: entries in flight are checked: the inflight byte, num within the ring, NEXT on every descriptor but the last, INDIRECT alone, ids below the ring and distinct, counters distinct with a successor")
    func entries() throws {
        #expect(try Self.defect { $0.setFlag(6, 7) } == .flag(index: 6, value: 7))
        #expect(try Self.defect { $0.setFlag(1, 2) } == .flag(index: 1, value: 2))
        #expect(try Self.defect { $0.setHead(3, inflight: 1, next: 4, last: 3, num: 0) } == .entry(index: 3))
        #expect(try Self.defect { $0.setHead(3, inflight: 1, next: 4, last: 3, num: 9) } == .entry(index: 3))
        #expect(try Self.defect { v in Self.descriptor(v, 1) { $0.flags.remove(.next) } } == .entry(index: 0))
        #expect(try Self.defect { v in Self.descriptor(v, 2) { $0.flags.insert(.next) } } == .entry(index: 0))
        #expect(try Self.defect { v in Self.descriptor(v, 2) { $0.flags.insert(.indirect) } } == .entry(index: 0))
        #expect(try Self.defect { v in Self.descriptor(v, 3) { $0.id = 8 } } == .entry(index: 3))
        #expect(try Self.defect { v in Self.descriptor(v, 3) { $0.id = v.descriptor(2).id } } == .entry(index: 3))
        let same = try Self.defect { $0.setCounter(3, 0) }
        #expect(same == .counter(index: 3, value: 0) || same == .counter(index: 0, value: 0))
        #expect(try Self.defect { $0.setCounter(3, .max) } == .counter(index: 3, value: .max))
    }

    @Test("GHT-INF-15: a copy that names a buffer the walk refuses breaks the queue at its resubmission with the chain's error, as a new chain would")
    func copiesAreValidated() throws {
        var h = T.harness()
        let area = try Self.recorded(&h)
        // Request 1's copy made an INDIRECT descriptor of a length no table has.
        Self.descriptor(area.view, 3) { $0.flags.insert(.indirect); $0.length = 24 }
        var queue = T.Queue(ring: h.ring, memory: h.device.memory, features: T.features, statusCell: h.status)
        try queue.trackInflight(in: area.range)
        #expect(queue.pendingResubmissions == 2)
        #expect(try queue.popAvailable()?.segmentCount == 3)
        #expect(throws: VirtqueueError.invalidIndirectLength(24)) { _ = try queue.popAvailable() }
    }
}
