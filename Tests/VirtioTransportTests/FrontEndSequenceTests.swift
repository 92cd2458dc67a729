import Testing
@testable import VirtioTransport
import VirtioCore
import VhostUser

/// The order of the front-end's requests and kicks as a device sees them (``DriverRuleDevice``),
/// through setup, traffic, a reset and the close.
@Suite("Front-end request order as a device sees it", .tags(.transport))
struct FrontEndSequenceTests {
    /// Every ordering rule the events break, as readable lines (empty when all hold).
    static func violations(_ events: [DriverRuleDevice.Event]) -> [String] {
        var found: [String] = []
        var featuresOK = false, driverOK = false
        var enabled: Set<UInt32> = []
        var fields: [UInt32: Set<VhostUserRequest>] = [:]
        let required: Set<VhostUserRequest> = [.setVringNum, .setVringAddress, .setVringBase, .setVringKick, .setVringCall, .setVringErr]
        func field(_ queue: UInt32, _ m: VhostUserMessage) {
            if enabled.contains(queue) && m.request != .setVringKick && m.request != .setVringCall && m.request != .setVringErr {
                found.append("TRN-M-03: \(m) while queue \(queue) is enabled")
            }
            fields[queue, default: []].insert(m.request)
        }
        for (i, event) in events.enumerated() {
            switch event {
            case .kick(let queue, _):
                if !driverOK { found.append("INIT-DRV-05: kick on queue \(queue) before DRIVER_OK (event \(i))") }
            case .refused:
                break
            case .request(let m):
                switch m {
                case .setStatus(let s) where s.isEmpty:
                    featuresOK = false; driverOK = false; enabled = []; fields = [:]
                case .setStatus(let s):
                    featuresOK = s.contains(.featuresOK); driverOK = s.contains(.driverOK)
                case .setFeatures where featuresOK:
                    found.append("INIT-DRV-02: SET_FEATURES after FEATURES_OK (event \(i))")
                case .setConfig where !featuresOK:
                    found.append("CFG-DRV-04: SET_CONFIG during negotiation (event \(i))")
                case .setVringNum(let v), .setVringBase(let v): field(v.index, m)
                case .setVringAddress(let a): field(a.index, m)
                case .setVringKick(let f), .setVringCall(let f), .setVringErr(let f): field(UInt32(f.index), m)
                case .getVringBase(let v): enabled.remove(v.index)
                case .setVringEnable(let v) where v.num == 0: enabled.remove(v.index)
                case .setVringEnable(let v):
                    let missing = required.subtracting(fields[v.index, default: []])
                    if !missing.isEmpty { found.append("TRN-M-06: queue \(v.index) enabled before \(missing) (event \(i))") }
                    enabled.insert(v.index)
                default: break
                }
            }
        }
        return found
    }

    /// Chains the queue's driver still counts as exposed.
    static func outstanding(_ q: FrontEndQueue) -> Int {
        switch q.driver {
        case .split(let d): return d.outstandingCount
        case .packed(let d): return d.outstandingCount
        case .empty, nil: return -1
        }
    }

    static func kicks(_ events: [DriverRuleDevice.Event]) -> [(queue: Int, count: UInt64)] {
        events.compactMap { if case .kick(let q, let n) = $0 { return (q, n) } else { return nil } }
    }

    @Test("INIT-DRV-02, INIT-DRV-05, CFG-DRV-04, TRN-M-03, TRN-M-06: setup, traffic, a reset and the close keep every ordering rule",
          arguments: [FrontEndConfiguration.RingFormat.split, .packed])
    func orderingRules(_ ring: FrontEndConfiguration.RingFormat) throws {
        var configuration = FrontEndConfiguration.small
        configuration.ring = ring
        configuration.queueCount = 2
        let (frontEnd, device) = try DriverRuleDevice.frontEnd(configuration: configuration)
        try frontEnd.initialize()
        #expect(Self.kicks(device.events).isEmpty, "nothing was published yet")
        for q in frontEnd.queues {
            try q.submit([1, 2, 3], replyCapacity: 16, parts: 2)
            try q.publish()
        }
        try frontEnd.reset()
        for q in frontEnd.queues {
            try q.submit([4, 5, 6], replyCapacity: 16)
            try q.publish()
        }
        frontEnd.close()
        let events = device.finish()
        #expect(Self.violations(events) == [])
        #expect(Self.kicks(events).count == 4, "each publish reached the device as a kick: \(events)")
        let enables = events.filter { if case .request(.setVringEnable(let v)) = $0 { return v.num == 1 } else { return false } }
        #expect(enables.count == 4, "both queues were enabled twice")
        // The checker itself catches each violation it looks for.
        let broken: [DriverRuleDevice.Event] = [
            .kick(queue: 0, count: 1),
            .request(.setStatus([.acknowledge, .driver, .featuresOK])), .request(.setFeatures([.version1])),
            .request(.setVringEnable(VhostUserVringState(index: 0, num: 1))),
            .request(.setVringNum(VhostUserVringState(index: 0, num: 8))),
        ]
        #expect(Self.violations(broken).map { $0.prefix(9) } == ["INIT-DRV-", "INIT-DRV-", "TRN-M-06:", "TRN-M-03:"])
    }

    @Test("NTF-DEF-02: without NOTIFICATION_DATA a kick names only its queue: one event on that queue's own doorbell")
    func kickNamesQueue() throws {
        var configuration = FrontEndConfiguration.small
        configuration.queueCount = 2
        configuration.useEventIndex = false   // the scripted device never moves avail_event: every publish kicks
        let (frontEnd, device) = try DriverRuleDevice.frontEnd(configuration: configuration)
        try frontEnd.initialize()
        #expect(!frontEnd.features.contains(.notificationData))
        var seen = 0
        for queue in [1, 0, 1, 1, 0] {
            try frontEnd.queues[queue].submit([UInt8(queue)], replyCapacity: 8)
            try frontEnd.queues[queue].publish()
            let all = Self.kicks(device.events)
            let kicks = all[seen...]
            seen = all.count
            #expect(kicks.count == 1 && kicks.first?.queue == queue && kicks.first?.count == 1, "\(kicks)")
        }
        frontEnd.close()
        _ = device.finish()
    }

    @Test("RST-DRV-01: a reset is done only when the status reads 0; until then nothing is set up again, abandoned or ungranted")
    func resetWaitsForZero() throws {
        var script = DriverRuleDevice.Script()
        script.statusAfterReset = [.acknowledge, .driver, .featuresOK, .driverOK]   // the device has not finished
        let (frontEnd, device) = try DriverRuleDevice.frontEnd(script)
        try frontEnd.initialize()
        let q = frontEnd.queues[0]
        try q.submit([1], replyCapacity: 8)
        try q.publish()
        let free = q.freeCount, granted = frontEnd.grantedReferenceCount
        #expect(Self.outstanding(q) == 1)
        let before = device.requests.count
        #expect(throws: FrontEndError.self) { try frontEnd.reset() }
        let after = Array(device.requests[before...])
        #expect(after.count == 2, "\(after)")
        #expect(after.first == .setStatus([]) && after.last == .getStatus)
        #expect(q.freeCount == free && Self.outstanding(q) == 1, "the request in flight is not abandoned")
        #expect(frontEnd.grantedReferenceCount == granted && frontEnd.grantsEnded == 0)
        frontEnd.close()
        _ = device.finish()

        // The same front-end against a device whose reset finishes: status 0 is read before anything else.
        let (other, finishing) = try DriverRuleDevice.frontEnd()
        try other.initialize()
        try other.queues[0].submit([1], replyCapacity: 8)
        try other.queues[0].publish()
        let start = finishing.requests.count
        try other.reset()
        let sequence = Array(finishing.requests[start...])
        #expect(sequence.prefix(2) == [.setStatus([]), .getStatus])
        #expect(other.queues[0].freeCount == FrontEndConfiguration.small.maxOutstanding)
        other.close()
        _ = finishing.finish()
    }
    @Test("TRN-M-04: the queue size sent is a power of 2 (split) or non-zero (packed); a device that refuses it as above its maximum ends setup with FAILED",
          arguments: [(FrontEndConfiguration.RingFormat.split, 16), (.split, 256), (.packed, 12), (.packed, 100)])
    func queueSizeWithinMaximum(_ ring: FrontEndConfiguration.RingFormat, _ size: Int) throws {
        let maximum: UInt32 = 64
        var script = DriverRuleDevice.Script()
        script.refuses = { if case .setVringNum(let v) = $0 { return v.num > maximum } else { return false } }
        var configuration = FrontEndConfiguration.small
        configuration.ring = ring
        configuration.queueSize = size
        let (frontEnd, device) = try DriverRuleDevice.frontEnd(script, configuration: configuration)
        let succeeded = (try? frontEnd.initialize()) != nil
        frontEnd.close()
        let events = device.finish()
        let sizes = events.compactMap { event -> UInt32? in
            switch event {
            case .request(.setVringNum(let v)), .refused(.setVringNum(let v)): return v.num
            default: return nil
            }
        }
        #expect(sizes.count == 1 && sizes.allSatisfy { $0 > 0 && $0 <= 32768 })
        if ring == .split { #expect(sizes.allSatisfy { $0.nonzeroBitCount == 1 }, "\(sizes)") }
        #expect(succeeded == (UInt32(size) <= maximum))
        #expect(events.statusWrites.contains { $0.contains(.driverOK) } == succeeded)
        #expect(events.statusWrites.contains { $0.contains(.failed) } == !succeeded)
    }

    @Test("TRN-M-04: a queue size the ring format does not allow is a typed error before the device hears of any queue",
          arguments: [(FrontEndConfiguration.RingFormat.split, 12), (.split, 0), (.split, 65536), (.packed, 0), (.packed, 40000)])
    func invalidQueueSize(_ ring: FrontEndConfiguration.RingFormat, _ size: Int) throws {
        var configuration = FrontEndConfiguration.small
        configuration.ring = ring
        configuration.queueSize = size
        #expect(throws: FrontEndError.self) { _ = try DriverRuleDevice.frontEnd(configuration: configuration) }
    }
}
