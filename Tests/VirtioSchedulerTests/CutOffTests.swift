import Synchronization
import Testing
import VirtioCore
import VirtioDevices
import VirtioScheduler
import VirtioTransport

#if canImport(Glibc)
import Glibc
#endif
import VirtioSystem

@Suite("Cut-off of a guest that never reaches a reusable point", .serialized)
struct CutOffTests {
    @Test("GHT-SCH-08: over real connections, a stalled guest is cut off within the bound, the other is served, the stalled queue breaks")
    func stalledGuest() throws {
        let socket = "/tmp/vg-cut-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
        let bound: UInt64 = 150_000_000
        let scheduler = try DeviceScheduler<OpaqueDeviceModel>(functionCount: 1, configuration: SchedulerConfiguration(
            mapping: .shared(0), sliceNanoseconds: 2_000_000, cutOffNanoseconds: bound))
        defer { scheduler.stop() }
        let gate = try Doorbell()
        // Guest 1's requests never finish until the test opens the gate: a guest that holds
        // its function and never reaches a reusable point.
        let stalling = ForwardingDevice(EchoDevice()) { _ = try? gate.wait(timeoutMilliseconds: 20_000) }
        let connections = RequestCounter()
        let backEnd = try BackEnd(socketPath: socket) {
            let device: any VirtioDevice = connections.add(1) == 1 ? stalling : EchoDevice()
            return try! ScheduledDevice(scheduler: scheduler, rules: .init(), device: device)
        }
        backEnd.start()
        defer { backEnd.stop() }
        let first = try FrontEnd.connect(socketPath: socket)
        let second = try FrontEnd.connect(socketPath: socket)
        defer { first.close(); second.close() }

        _ = try first.queues[0].submit([1, 2, 3], replyCapacity: 3)
        try first.queues[0].publish()
        while stalling.requests.value == 0 { usleep(1000) }
        #expect(scheduler.functions[0].status.owner == DomainID(1))

        let t0 = SystemClock.monotonic.nanoseconds
        _ = try second.queues[0].submit([4, 5, 6], replyCapacity: 3)
        try second.queues[0].publish()
        let reply = try second.queues[0].waitForCompletions(timeoutMilliseconds: 5000)
        let waited = SystemClock.monotonic.nanoseconds - t0
        #expect(reply.first?.reply == [4, 5, 6])
        #expect(waited >= bound && waited < bound + 500_000_000, "served after \(waited / 1_000_000) ms")
        #expect(scheduler.statistics(of: DomainID(1))?.cutOff == true)
        #expect(scheduler.functions[0].counters.scrubs == 1)

        // The stalled request finally returns: nothing of it completes, the queue is broken.
        try gate.signal()
        #expect(throws: FrontEndError.deviceNeedsReset(queue: 0)) { _ = try first.queues[0].waitForCompletions(timeoutMilliseconds: 5000) }
        // The other guest carries on.
        _ = try second.queues[0].submit([7], replyCapacity: 1)
        try second.queues[0].publish()
        #expect(try second.queues[0].waitForCompletions(timeoutMilliseconds: 5000).first?.reply == [7])
    }
}
