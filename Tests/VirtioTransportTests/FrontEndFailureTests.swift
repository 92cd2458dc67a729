import Testing
@testable import VirtioTransport
import VirtioCore
import VirtioDevices
import VhostUser

/// What the front-end does when setup fails, when a device withholds completions, and when a
/// device asks for a reset.
@Suite("Front-end failure paths", .tags(.transport), .serialized)
struct FrontEndFailureTests {
    /// A setup step the scripted device refuses.
    struct Step: Sendable, CustomTestStringConvertible {
        let name: String
        let matches: @Sendable (VhostUserMessage) -> Bool
        var testDescription: String { name }
    }

    static let steps: [Step] = [
        Step(name: "ACKNOWLEDGE") { $0 == .setStatus([.acknowledge]) },
        Step(name: "DRIVER") { $0 == .setStatus([.acknowledge, .driver]) },
        Step(name: "SET_FEATURES") { if case .setFeatures = $0 { return true } else { return false } },
        Step(name: "FEATURES_OK") { if case .setStatus(let s) = $0 { return s.contains(.featuresOK) } else { return false } },
        Step(name: "SET_VRING_NUM") { $0.request == .setVringNum },
        Step(name: "SET_VRING_ADDR") { $0.request == .setVringAddress },
        Step(name: "SET_VRING_BASE") { $0.request == .setVringBase },
        Step(name: "SET_VRING_KICK") { $0.request == .setVringKick },
        Step(name: "SET_VRING_CALL") { $0.request == .setVringCall },
        Step(name: "SET_VRING_ERR") { $0.request == .setVringErr },
        Step(name: "SET_VRING_ENABLE") { $0.request == .setVringEnable },
        Step(name: "DRIVER_OK") { if case .setStatus(let s) = $0 { return s.contains(.driverOK) } else { return false } },
    ]

    @Test("INIT-DRV-04: a refusal at any setup step is followed by FAILED (no bit cleared) and nothing else of the setup", arguments: steps)
    func failedAfterRefusal(_ step: Step) throws {
        var script = DriverRuleDevice.Script()
        script.refuses = step.matches
        let (frontEnd, device) = try DriverRuleDevice.frontEnd(script)
        #expect(throws: FrontEndError.self) { try frontEnd.initialize() }
        frontEnd.close()
        let events = device.finish()
        let refused = try #require(events.firstIndex { if case .refused = $0 { return true } else { return false } })
        let writtenBefore: [DeviceStatus] = events[..<refused].compactMap { if case .request(.setStatus(let s)) = $0 { return s } else { return nil } }
        let accepted: DeviceStatus = writtenBefore.last ?? []
        let later = events[(refused + 1)...].compactMap { if case .request(let m) = $0 { return m } else { return nil } }
        let failed = accepted.union(DeviceStatus.failed)
        #expect(later.first == .setStatus(failed), "FAILED on top of \(accepted) comes next: \(later)")
        // What follows is the close: a reset and the end of the grants, no further setup.
        #expect(!later.dropFirst().contains { $0.request.isVringSetup || $0.request == .setFeatures }, "\(later)")
        #expect(!later.dropFirst().contains { if case .setStatus(let s) = $0 { return !s.isEmpty } else { return false } }, "\(later)")
    }

    /// The bytes that expose buffers to the device: descriptors, the available index and ring
    /// (split), indirect tables and request buffers. The driver's own notification-suppression
    /// fields (split avail.flags and used_event, the packed driver event area) are left out:
    /// waiting may rightly change them.
    static func exposed(_ q: FrontEndQueue) -> [UInt8] {
        let bytes = { (run: PoolRun) in run.host.withUnsafeBytes { Array($0) } }
        var result = bytes(q.descriptors) + bytes(q.tables) + bytes(q.requests)
        if case .split = q.driver { result += bytes(q.avail)[2..<(4 + 2 * q.size)] }
        return result
    }

    @Test("CLN-DRV-01: while a device withholds completions, a timed-out wait leaves exposed descriptors, rings and grants untouched",
          arguments: [FrontEndConfiguration.RingFormat.split, .packed])
    func timeoutLeavesExposedBuffers(_ ring: FrontEndConfiguration.RingFormat) throws {
        var configuration = FrontEndConfiguration.small
        configuration.ring = ring
        let (frontEnd, device) = try DriverRuleDevice.frontEnd(configuration: configuration)
        try frontEnd.initialize()
        let q = frontEnd.queues[0]
        try q.submit(Array(repeating: 0xA5, count: 300), replyCapacity: 64, parts: 3)
        try q.submit([1, 2, 3], replyCapacity: 16)
        try q.publish()
        let snapshot = Self.exposed(q), granted = frontEnd.grantedReferenceCount, free = q.freeCount
        for _ in 0..<2 {
            #expect(throws: FrontEndError.timedOut("completions on queue 0")) { _ = try q.waitForCompletions(timeoutMilliseconds: 50) }
            let unchanged = Self.exposed(q) == snapshot
            #expect(unchanged, "the exposed descriptors, ring entries, tables and requests are untouched")
            #expect(frontEnd.grantedReferenceCount == granted && frontEnd.grantsEnded == 0)
            #expect(q.freeCount == free)
        }
        frontEnd.close()
        _ = device.finish()
    }

    @Test("FRM-DRV-02: a request takes one descriptor per segment it needs, and a single ring descriptor through an indirect table")
    func descriptorsPerRequest() throws {
        for indirect in [false, true] {
            var configuration = FrontEndConfiguration.small
            configuration.useIndirectDescriptors = indirect
            let (frontEnd, device) = try DriverRuleDevice.frontEnd(configuration: configuration)
            try frontEnd.initialize()
            let q = frontEnd.queues[0]
            for parts in 1...4 {
                guard case .split(let before) = q.driver else { Issue.record("not a split ring"); return }
                try q.submit(Array(repeating: 7, count: 100), replyCapacity: 32, parts: parts)
                guard case .split(let after) = q.driver else { Issue.record("not a split ring"); return }
                let used = before.freeDescriptorCount - after.freeDescriptorCount
                #expect(used == (indirect ? 1 : parts + 1), "indirect \(indirect), \(parts) parts: \(used) descriptors")
            }
            frontEnd.close()
            _ = device.finish()
        }
    }

    @Test("STAT-DRV-04: after DEVICE_NEEDS_RESET the front-end reports the error instead of waiting, abandons what was in flight, and a reset brings the queue back")
    func needsResetRecoversByReset() throws {
        let server = try TestBackEnd("needs-reset")
        var configuration = FrontEndConfiguration()
        configuration.timeoutMilliseconds = 3000
        let frontEnd = try FrontEnd.connect(socketPath: server.path, configuration: configuration)
        let q = frontEnd.queues[0]
        try q.submit([1, 2, 3], replyCapacity: 64)
        try q.submit(readable: [BufferSegment(address: frontEnd.forbiddenAddress, length: 16)], writable: [])
        try q.submit([4, 5, 6], replyCapacity: 64)
        try q.publish()
        let start = ContinuousClock.now
        var outcome: FrontEndError?
        while outcome == nil {
            do { _ = try q.waitForCompletions() } catch { outcome = error }
        }
        #expect(outcome == .deviceNeedsReset(queue: 0))
        #expect(ContinuousClock.now - start < .seconds(2), "reported, not waited out")
        #expect(try frontEnd.status().contains(.deviceNeedsReset))
        try frontEnd.reset()
        #expect(q.freeCount == configuration.maxOutstanding, "requests in flight were abandoned, not assumed completed")
        #expect(try frontEnd.status() == [.acknowledge, .driver, .featuresOK, .driverOK])
        try EndpointTests.stream(frontEnd, count: 50)
        frontEnd.close()
    }
}
