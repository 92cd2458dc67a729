import Testing
import VirtioCore
import VirtioDevices
import VirtioTransport
@testable import VirtioScheduler

/// A scheduled guest's state moved from one back-end's scheduler to another's, as DEVICE_STATE
/// carries it in a live migration (Spec/restart.md §4).
@Suite("Scheduler: a guest's state across a migration")
struct SchedulerMigrationTests {
    static func scheduler() throws -> DeviceScheduler<OpaqueDeviceModel> {
        try DeviceScheduler(functionCount: 1, configuration: configuration(policy: .deficitRoundRobin(unit: .requests, quantum: 4),
                                                                          sliceMilliseconds: 1000, cutOffMilliseconds: 5000))
    }

    /// Runs `batches` batches of one request through `device`.
    static func serve(_ device: ScheduledDevice<OpaqueDeviceModel>, batches: Int) {
        for _ in 0..<batches {
            let requests = Requests()
            requests.add([1, 2, 3, 4, 5, 6, 7, 8], writable: 64)
            var batch = RequestBatch.testing(fragments: requests.fragments, requests: requests.spans)
            device.process(queue: 0, batch: &batch)
            device.queueIdle(0)
        }
    }

    @Test("GHT-DST-08: a guest's features, deficit and what it was served move to the destination's scheduler; its weight stays the destination's")
    func moves() throws {
        let a = try Self.scheduler(), b = try Self.scheduler()
        defer { a.stop(); b.stop() }
        let source = try ScheduledDevice(scheduler: a, rules: OpaqueDeviceModel.Rules(), weight: 3, device: ChecksumEchoDevice())
        #expect(source.acceptFeatures([.version1, .eventIndex]))
        Self.serve(source, batches: 5)
        let saved = try #require(a.migrationState(of: source.guest))
        #expect(saved.requests == 5 && saved.batches == 5 && saved.features == [.version1, .eventIndex])
        let state = try source.saveState()
        #expect(state.count == GuestMigrationState.byteCount, "ChecksumEchoDevice keeps no state of its own")

        let destination = try ScheduledDevice(scheduler: b, rules: OpaqueDeviceModel.Rules(), weight: 1, device: ChecksumEchoDevice())
        #expect(b.migrationState(of: destination.guest) != saved)
        try destination.loadState(state)
        #expect(b.migrationState(of: destination.guest) == saved)
        #expect(b.statistics(of: destination.guest)?.requests == 5)
        #expect(b.state.withLock { $0.guests[destination.guest]?.weight } == 1, "the weight is the destination's")
        Self.serve(destination, batches: 1)
        #expect(b.statistics(of: destination.guest)?.requests == 6, "the guest goes on being served and counted")
    }

    @Test("GHT-DST-04: a hostile state (format, version, length, queue count, a device feature not offered, a deficit beyond one allowance or the largest debt) is refused with its typed error and changes nothing")
    func hostile() throws {
        let a = try Self.scheduler()
        defer { a.stop() }
        let device = try ScheduledDevice(scheduler: a, rules: OpaqueDeviceModel.Rules(), weight: 2, device: ChecksumEchoDevice())
        #expect(device.acceptFeatures([.version1]))
        Self.serve(device, batches: 2)
        let good = try device.saveState()
        let before = a.migrationState(of: device.guest)
        func patched(_ offset: Int, _ bytes: [UInt8]) -> [UInt8] {
            var s = good
            s.replaceSubrange(offset..<offset + bytes.count, with: bytes)
            return s
        }
        func le64(_ v: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: v >> (8 * UInt64($0))) } }
        let cases: [([UInt8], DeviceStateError)] = [
            (patched(0, [0, 0, 0, 0]), .unknownFormat),
            (patched(4, [2, 0]), .unknownFormat),
            (Array(good.prefix(20)), .wrongLength),
            (patched(6, [3, 0]), .invalidValue("queue count 3, the device has 1")),
            (patched(8, le64(1 << 5)), .invalidValue("device features \(VirtioFeatures(rawValue: 1 << 5)) the device does not offer")),
            (patched(16, le64(9)), .invalidValue("deficit 9")),
            (patched(16, le64(UInt64(bitPattern: -(1 << 41)))), .invalidValue("deficit \(-(1 << 41))")),
        ]
        for (state, error) in cases {
            #expect(throws: error) { try device.loadState(state) }
            #expect(a.migrationState(of: device.guest) == before)
        }
        #expect(throws: DeviceStateError.unexpectedState(byteCount: 1)) { try device.loadState(good + [0]) }
        #expect(a.migrationState(of: device.guest) == before)
        try device.loadState(patched(16, le64(8)))   // one allowance at weight 2: accepted
        #expect(a.migrationState(of: device.guest)?.deficit == 8)
    }
}
