import Foundation
import Synchronization
import Testing
import VirtioCore
import VirtioConformance

/// What the driver writes, and in which order a device can see it: rings zeroed at setup,
/// indirect tables linked in order, chains complete before they are published, and no kick
/// lost to a device that re-enables notifications at any moment.
@Suite("Driver publication order", .tags(.ring))
struct DriverPublicationTests {
    @Test("ANS-DRV-01: the driver zeroes the ring it sets up, used.flags and the packed event areas included")
    func ringsZeroedAtSetup() throws {
        let region = GuestMemoryRegion(size: 1 << 20, guestBase: 0)
        let split = SplitRingLayout(queueSize: 16)!
        let splitRange = region.hostRange(at: 0x1000, count: split.contiguousOffsets.totalSize)!
        splitRange.fill(with: 0xFF)
        let ring = try SplitRing(layout: split, contiguous: splitRange)
        #expect(ring.usedRing.flags != 0)
        _ = SplitDriverQueue(ring: ring, features: [.version1])
        #expect(ring.usedRing.flags == 0)
        // The three areas (not the padding before the used ring, which belongs to no area) are zero.
        let o = split.contiguousOffsets
        let areas = [o.descriptorTable..<(o.availRing + split.availRingSize), o.usedRing..<o.totalSize]
        let zeroed = splitRange.withUnsafeBytes { bytes in areas.allSatisfy { bytes[$0].allSatisfy { $0 == 0 } } }
        #expect(zeroed)

        let packed = PackedRingLayout(queueSize: 12)!
        let packedRange = region.hostRange(at: 0x10000, count: packed.contiguousOffsets.totalSize)!
        packedRange.fill(with: 0xFF)
        _ = PackedDriverQueue(ring: try PackedRing(layout: packed, contiguous: packedRange), features: [.version1, .ringPacked])
        #expect(packedRange.withUnsafeBytes { $0.allSatisfy { $0 == 0 } })
    }

    @Test("IND-DRV-05: with IN_ORDER (and without) indirect entries are linked in order, entry i to i + 1", arguments: [false, true])
    func indirectEntriesSequential(_ inOrder: Bool) throws {
        let features: VirtioFeatures = inOrder ? [.version1, .indirectDescriptors, .inOrder] : [.version1, .indirectDescriptors]
        var h = RingHarness(queueSize: 8, features: features, indirectTables: 2, entriesPerTable: 8)
        for n in 1...8 {
            let readable = (0..<(n + 1) / 2).map { BufferSegment(address: RingHarness.page($0), length: 100) }
            let writable = (readable.count..<n).map { BufferSegment(address: RingHarness.page($0), length: 200) }
            let head = try h.driver.add(readable: readable, writable: writable, token: UInt64(n), layout: .indirect)
            h.driver.publish()
            let pointer = h.ring.descriptorTable.load(Int(head))
            #expect(pointer.flags.contains(.indirect) && pointer.length == UInt32(16 * n))
            let table = UnsafeDescriptorTable(h.region.hostRange(at: pointer.address, count: 16 * n)!)
            for i in 0..<n {
                let entry = table.load(i)
                #expect(entry.flags.contains(.next) == (i < n - 1), "entry \(i) of \(n)")
                if i < n - 1 { #expect(entry.next == UInt16(i + 1), "entry \(i) of \(n) links to \(entry.next)") }
                #expect(entry.flags.contains(.write) == (i >= readable.count))
            }
            let chain = try #require(try h.device.popAvailable())
            #expect(chain.segmentCount == n)
            h.device.addUsed(chain, length: 0)
            h.device.publishUsed()
            #expect(try h.driver.reapUsed()?.token == UInt64(n))
        }
    }

    @Test("SUP-DRV-01: descriptors and ring entries are in place before the index moves, and the index moves only at publish")
    func indexPublishedLast() throws {
        var h = RingHarness(queueSize: 8)
        var heads: [UInt16] = []
        for k in 0..<3 {
            let segments = (0...k).map { BufferSegment(address: RingHarness.page($0), length: UInt32(10 * k + $0 + 1)) }
            let head = try h.driver.add(readable: segments, writable: [], token: UInt64(k), layout: .direct)
            heads.append(head)
            // What a device sees now: the chain and its ring entry are written, the index is not.
            #expect(h.ring.availRing.loadIndex() == 0)
            #expect(h.ring.availRing.entry(k) == head)
            var index = Int(head)
            for (i, segment) in segments.enumerated() {
                let d = h.ring.descriptorTable.load(index)
                #expect(d.address == segment.address && d.length == segment.length)
                #expect(d.flags.contains(.next) == (i < k))
                index = Int(d.next)
            }
            #expect(try h.device.popAvailable() == nil)
        }
        h.driver.publish()
        #expect(h.ring.availRing.loadIndex() == 3)
        for k in 0..<3 {
            let chain = try #require(try h.device.popAvailable())
            #expect(chain.headIndex == heads[k])
            #expect(chain.segments.map(\.length) == (0...k).map { UInt32(10 * k + $0 + 1) })
        }
    }

    @Test("SUP-DRV-01, SUP-DRV-03: a device on another thread that re-enables notifications whenever it runs dry sees every chain whole and is never left waiting with work published",
          arguments: [VirtioFeatures([.version1]), [.version1, .eventIndex]])
    func splitConcurrentPublication(_ features: VirtioFeatures) throws {
        let h = RingHarness(queueSize: 16, features: features)
        let region = h.region
        let driver = h.driver
        let outcome = try Self.stress(driver: driver, device: h.takeDevice(), chains: 20_000)
        withExtendedLifetime(region) {}
        #expect(outcome.problem == nil, "\(outcome.problem ?? "")")
        #expect(outcome.completed == 20_000)
    }

    @Test("PKD-SUP-01, SUP-DRV-03: a packed device on another thread sees every list whole (its first flags published last) and is never left waiting with work published",
          arguments: [VirtioFeatures([.version1, .ringPacked]), [.version1, .ringPacked, .eventIndex]])
    func packedConcurrentPublication(_ features: VirtioFeatures) throws {
        let h = PackedRingHarness(queueSize: 12, features: features)
        let region = h.region
        let driver = h.driver
        let outcome = try Self.stress(driver: driver, device: h.takeDevice(), chains: 20_000)
        withExtendedLifetime(region) {}
        #expect(outcome.problem == nil, "\(outcome.problem ?? "")")
        #expect(outcome.completed == 20_000)
    }

    // MARK: the two-thread run

    struct Outcome {
        var completed = 0
        var problem: String?
    }

    /// Chain `s` holds `s % 3 + 1` readable segments of lengths `s % 1000 + 1 + i`.
    static func segments(_ s: Int) -> [BufferSegment] {
        (0..<(s % 3 + 1)).map { BufferSegment(address: RingHarness.page($0), length: UInt32(s % 1000 + 1 + $0)) }
    }

    /// The driver adds and publishes `chains` chains on this thread, kicking when it must; the
    /// device pops them on another thread, checks each one whole, and when it finds nothing
    /// re-enables notifications and sleeps until a kick. A kick lost between the driver's
    /// publish and its read of the suppression state leaves the device asleep with work
    /// published: a stall, reported after two seconds.
    static func stress<Driver: DriverQueue, Device: DeviceQueue & ~Copyable>(driver: Driver, device: consuming Device,
                                                                            chains: Int) throws -> Outcome {
        let shared = StressState()
        // The device queue moves to the box its thread alone uses (it is noncopyable: no alias).
        let device = UncheckedBox(device)
        let finished = DispatchSemaphore(value: 0)
        let thread = Thread {
            defer { finished.signal() }
            var expected = 0
            while expected < chains && shared.problem.withLock({ $0 == nil }) {
                do {
                    if let chain = try device.value.popAvailable() {
                        let lengths = chain.segments.map(\.length)
                        guard lengths == segments(expected).map(\.length) else {
                            shared.fail("chain \(expected) seen as \(lengths)")
                            return
                        }
                        device.value.addUsed(chain, length: 0)
                        device.value.publishUsed()
                        expected += 1
                        continue
                    }
                } catch {
                    shared.fail("the device broke the queue at chain \(expected): \(error)")
                    return
                }
                let seen = shared.kicks.load(ordering: .acquiring)
                if device.value.enableNotifications() { device.value.disableNotifications(); continue }
                let deadline = ContinuousClock.now + .seconds(2)
                while shared.kicks.load(ordering: .acquiring) == seen {
                    if ContinuousClock.now > deadline {
                        shared.fail("stalled at chain \(expected): no kick after notifications were re-enabled")
                        return
                    }
                    sched_yield()
                }
                device.value.disableNotifications()
            }
        }
        thread.start()
        var driver = driver
        var completed = 0
        var deadline = ContinuousClock.now + .seconds(5)
        for s in 0..<chains {
            while driver.freeDescriptorCount < 3 {
                completed += try driver.reapAllUsed { _ in }
                if shared.problem.withLock({ $0 != nil }) || ContinuousClock.now > deadline { break }
                sched_yield()
            }
            if shared.problem.withLock({ $0 != nil }) || ContinuousClock.now > deadline { break }
            deadline = ContinuousClock.now + .seconds(5)
            try driver.add(readable: segments(s), writable: [], token: UInt64(s), layout: .direct)
            driver.publish()
            if driver.kickNeeded() { shared.kicks.add(1, ordering: .releasing) }
        }
        finished.wait()
        completed += try driver.reapAllUsed { _ in }
        return Outcome(completed: completed, problem: shared.problem.withLock { $0 })
    }
}

/// The kick counter and the first problem of a two-thread run.
final class StressState: Sendable {
    let kicks = Atomic<Int>(0)
    let problem = Locked<String?>(nil)

    func fail(_ message: String) { problem.withLock { if $0 == nil { $0 = message } } }
}

/// One side of a queue, handed to the thread that alone uses it.
final class UncheckedBox<Value: ~Copyable>: @unchecked Sendable {
    var value: Value
    init(_ value: consuming Value) { self.value = value }
}
