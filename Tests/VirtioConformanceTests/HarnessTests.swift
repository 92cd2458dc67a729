import Testing
import VirtioConformance
import VirtioCore

#if canImport(Glibc)
import Glibc
#endif
import VhostUser

/// The harnesses themselves: a conformance check is only as good as the log it reads and the
/// misbehaviour it can script.
@Suite("The scripted front-end and back-end")
struct HarnessTests {
    /// A chain of one 16-byte readable buffer (page 0) and one 64-byte writable one (page 1).
    func exposeOne(_ h: inout SplitRingHarness) throws {
        try h.driver.add(readable: [BufferSegment(address: SplitRingHarness.page(0), length: 16)],
                         writable: [BufferSegment(address: SplitRingHarness.page(1), length: 64)], token: 7)
        h.driver.publish()
    }

    @Test("GHT-CNF-07: the access log records every translation of the device in order, with its direction")
    func logsEveryAccess() throws {
        var h = SplitRingHarness()
        try exposeOne(&h)
        h.accessLog.clear()
        let chain = try #require(try h.device.popAvailable())
        var reader = h.device.reader(for: chain)
        _ = try reader.readBytes(16)
        var writer = h.device.writer(for: chain)
        try writer.write(contentsOf: [UInt8](repeating: 0xAB, count: 64))
        h.device.addUsed(chain, length: writer.usedLength)
        h.device.publishUsed()
        let payload = h.accessLog.records.filter { $0.address >= SplitRingHarness.payloadBase }
        #expect(payload.map(\.access) == [.read, .write])
        #expect(payload.map(\.address) == [SplitRingHarness.page(0), SplitRingHarness.page(1)])
        #expect(payload.allSatisfy { $0.fault == nil })
        #expect(h.accessLog.accesses(to: SplitRingHarness.page(1)..<SplitRingHarness.page(2), .write).count == 1)
        #expect(try h.driver.reapUsed()?.token == 7)
    }

    @Test("GHT-CNF-07: a range made read-only faults device writes with readOnly, logs the fault and leaves the memory unchanged")
    func scriptedReadOnly() throws {
        var h = SplitRingHarness()
        try exposeOne(&h)
        h.accessLog.makeReadOnly(SplitRingHarness.page(1)..<SplitRingHarness.page(2))
        let chain = try #require(try h.device.popAvailable())
        var reader = h.device.reader(for: chain)
        _ = try reader.readBytes(16)   // reads are still allowed
        var writer = h.device.writer(for: chain)
        #expect(throws: ChainAccessError.fault(TranslationFault(.readOnly, address: SplitRingHarness.page(1), length: 64, access: .write))) {
            try writer.write(contentsOf: [UInt8](repeating: 0xAB, count: 64))
        }
        #expect(h.accessLog.faults.map(\.fault) == [.readOnly])
        #expect(h.region.read(at: SplitRingHarness.page(1), count: 64) == [UInt8](repeating: 0, count: 64))
    }

    @Test("GHT-CNF-07: an unreachable range faults every access with notGranted, before the memory is touched")
    func scriptedUnreachable() throws {
        var h = SplitRingHarness()
        try exposeOne(&h)
        h.accessLog.makeUnreachable(SplitRingHarness.page(0)..<SplitRingHarness.page(1))
        let chain = try #require(try h.device.popAvailable())
        var reader = h.device.reader(for: chain)
        #expect(throws: ChainAccessError.self) { _ = try reader.readBytes(16) }
        #expect(h.accessLog.faults.first?.fault == .notGranted)
        h.accessLog.allowEverything()
        var again = h.device.reader(for: chain)
        #expect(try again.readBytes(16).count == 16)
    }

    @Test("GHT-CNF-08: the scripted front-end's rings reach the device exactly as written, malformed ones included")
    func rawFrontEnd() throws {
        // A two-descriptor loop: 0 → 1 → 0, which no checked driver would write.
        var h = SplitRingHarness(queueSize: 4)
        h.writeDescriptor(0, address: SplitRingHarness.page(0), length: 8, flags: .next, next: 1)
        h.writeDescriptor(1, address: SplitRingHarness.page(1), length: 8, flags: .next, next: 0)
        h.makeAvailable([0])
        #expect(throws: VirtqueueError.self) { _ = try h.device.popAvailable() }
        do { let broken = h.device.isBroken; #expect(broken) }

        // An index jump with no entries behind it.
        var jump = SplitRingHarness(queueSize: 4)
        jump.publishAvailable(5)
        #expect(throws: VirtqueueError.availIndexTooFarAhead(availIndex: 5, lastSeen: 0)) { _ = try jump.device.popAvailable() }

        // A packed slot with AVAIL and USED both set for the driver's lap is not available.
        var packed = PackedRingHarness(queueSize: 4)
        packed.writeAvailable(0, id: 0, ownership: [.avail, .used])
        #expect(try packed.device.popAvailable() == nil)
        packed.writeAvailable(0, id: 9)
        #expect(throws: VirtqueueError.self) { _ = try packed.device.popAvailable() }
    }

    @Test("GHT-CNF-09: the scripted back-end's used entries reach the driver exactly as written")
    func rawBackEnd() throws {
        var h = SplitRingHarness()
        try exposeOne(&h)
        h.writeUsed(0, id: 0, length: 65)   // one byte beyond the writable capacity
        h.publishUsed(1)
        #expect(throws: DriverQueueError.self) { _ = try h.driver.reapUsed() }
        #expect(h.driver.isBroken)
        #expect(h.usedElements == [UsedElement(id: 0, length: 65)])

        var packed = PackedRingHarness(queueSize: 4)
        try packed.driver.add(readable: [BufferSegment(address: SplitRingHarness.page(0), length: 16)], writable: [], token: 3)
        packed.driver.publish()
        packed.writeUsed(0, id: 2, length: 0, wrote: false)   // an id never exposed
        #expect(throws: DriverQueueError.self) { _ = try packed.driver.reapUsed() }
    }

    @Test("GHT-CNF-09: the scripted vhost-user back-end answers as scripted, refuses on demand and logs every request in order")
    func scriptedVhostUserBackEnd() throws {
        let path = "/tmp/vg-scripted-\(getpid()).sock"
        unlink(path)
        defer { unlink(path) }
        var script = ScriptedVhostUserBackEnd.Script()
        script.offered = [.version1, .accessPlatform, .vhostUserProtocolFeatures]
        script.refuses = { if case .setOwner = $0 { return true } else { return false } }
        let backEnd = try ScriptedVhostUserBackEnd.listen(at: path, script)
        let frontEnd = try ScriptedVhostUserFrontEnd(path: path)
        try frontEnd.send(.getFeatures)
        guard case .features(let offered) = try frontEnd.reply(to: .getFeatures) else {
            Issue.record("GET_FEATURES was not answered with features")
            return
        }
        #expect(offered == script.offered)
        #expect(try !frontEnd.ack(.setOwner).isSuccess, "the scripted refusal")
        #expect(try frontEnd.ack(.setStatus([.acknowledge])).isSuccess)
        frontEnd.close()
        let events = backEnd.finish().map(\.description)
        #expect(events == ["\(VhostUserMessage.getFeatures)", "REFUSED \(VhostUserMessage.setOwner)", "\(VhostUserMessage.setStatus([.acknowledge]))"])
    }
}
