import Testing
import VirtioCore
import VirtioDevices
@testable import VirtioScheduler

/// Context switches and run-time remapping.
extension SchedulerTests {
    @Test("GHT-SCH-05: each guest's context is saved at the end of its turn and restored at the next: queue positions and rules")
    func contextSwitch() throws {
        let s = try DeviceScheduler<BlockDeviceModel>(functionCount: 1, configuration: configuration(sliceMilliseconds: 1, cutOffMilliseconds: 5000))
        defer { s.stop() }
        let rulesA = BlockDeviceModel.Rules(sectors: 0..<1000)
        let rulesB = BlockDeviceModel.Rules(sectors: 5000..<6000, readOnly: true)
        let a = try s.register(rules: rulesA, queueCount: 2)
        let b = try s.register(rules: rulesB, queueCount: 2)
        let f = s.functions[0]

        /// Checks what the function holds in `lease`'s turn, then advances the queue positions.
        func turn(_ lease: FunctionLease, _ rules: BlockDeviceModel.Rules, positions: [UInt16], advance: [UInt16]) throws {
            let (loaded, held, owner, readsSector10) = try s.withFunction(lease) { model, registers in
                let v = verdict(&model, blockRequest(.read, sector: 10), writable: 513)
                if v.isAllowed { model.finish(queue: 0) }
                return (model.rules, registers.queueStates.map { $0?.nextUsed ?? 0 }, registers.guest, v.isAllowed)
            }
            #expect(owner == lease.guest && loaded == rules && held == positions)
            #expect(readsSector10 == (lease.guest == a), "the model checks against the holder's window")
            #expect(f.inspection.registers?.guest == lease.guest && f.inspection.registers?.rules == rules)
            try s.withFunction(lease) { _, registers in
                for q in 0..<2 {
                    let used = (registers.queueStates[q]?.nextUsed ?? 0) &+ advance[q]
                    registers.queueStates[q] = QueueState(format: .split, size: 256, nextAvail: used, nextUsed: used)
                }
            }
            #expect(f.inspection.registers?.queueStates.map { $0?.nextUsed ?? 0 } == zip(positions, advance).map { $0 &+ $1 })
        }

        // Turns ended by release.
        var lease = try s.obtain(a)
        try turn(lease, rulesA, positions: [0, 0], advance: [5, 2])
        try s.finishBatch(lease, requests: 1, bytes: 0)
        s.release(a)
        lease = try s.obtain(b)
        try turn(lease, rulesB, positions: [0, 0], advance: [3, 0])
        try s.finishBatch(lease, requests: 1, bytes: 0)
        s.release(b)
        lease = try s.obtain(a)
        try turn(lease, rulesA, positions: [5, 2], advance: [0xffff, 1])

        // Turns ended by preemption (a's slice is over and b waits).
        let toB = PendingObtain(s, b)
        sleep(milliseconds: 5)
        try s.finishBatch(lease, requests: 1, bytes: 0)
        lease = try #require(try toB.wait(seconds: 2)?.get())
        try turn(lease, rulesB, positions: [3, 0], advance: [1, 1])
        let toA = PendingObtain(s, a)
        sleep(milliseconds: 5)
        try s.finishBatch(lease, requests: 1, bytes: 0)
        lease = try #require(try toA.wait(seconds: 2)?.get())
        try turn(lease, rulesA, positions: [4, 3], advance: [0, 0])
        try s.finishBatch(lease, requests: 1, bytes: 0)
        #expect(f.counters.switches == 5 && f.counters.refusedSwitches == 0)
    }

    @Test("GHT-SCH-09: remapping a holder with a request in flight loses nothing; its next obtain gets the new function")
    func remap() throws {
        let s = try opaqueScheduler(functions: 2, mapping: .pool, sliceMilliseconds: 1, cutOffMilliseconds: 100)
        defer { s.stop() }
        let a = try s.register(rules: .init(), queueCount: 1)
        let la = try s.obtain(a)
        #expect(la.function == 0)
        _ = try s.startRequest(la)
        try s.assign(a, to: [1])
        #expect(s.functions(of: a) == [1])
        sleep(milliseconds: 20)
        #expect(s.functions[0].status.owner == a, "a keeps its function while its request is in flight")
        try s.finishRequest(la)
        try s.finishBatch(la, requests: 1, bytes: 512)
        #expect(s.functions[0].status.state == .idle, "function 0 went back at a's reusable point")
        let stats = try #require(s.statistics(of: a))
        #expect(stats.requests == 1 && stats.bytes == 512 && !stats.cutOff)
        let next = try #require(try PendingObtain(s, a).wait(seconds: 2)?.get())
        #expect(next.function == 1)
        #expect(s.functions.map(\.counters.scrubs) == [0, 0])
    }

    @Test("GHT-SCH-09, GHT-SCH-08: a remapped holder is not cut off while nobody waits for its function, however long its request")
    func remapIsNotACutOff() throws {
        // Slices far longer than the test: no turn ends by time; the cut-off bound is short.
        let s = try opaqueScheduler(functions: 2, mapping: .pool, sliceMilliseconds: 60_000, cutOffMilliseconds: 50)
        defer { s.stop() }
        let a = try s.register(rules: .init(), queueCount: 1)
        let x = try s.register(rules: .init(), queueCount: 1)
        let b = try s.register(rules: .init(), queueCount: 1)
        let la = try s.obtain(a)
        _ = try s.startRequest(la)
        let lx = try #require(try PendingObtain(s, x).wait(seconds: 2)?.get())
        #expect(la.function == 0 && lx.function == 1)
        // b waits for function 1 only (the watchdog is awake); a is moved off function 0.
        try s.assign(b, to: [1])
        let pending = PendingObtain(s, b)
        try s.assign(a, to: [1])
        sleep(milliseconds: 250)
        #expect(s.statistics(of: a)?.cutOff == false)
        #expect(s.functions[0].status.owner == a)
        try s.finishRequest(la)
        try s.finishBatch(la, requests: 1, bytes: 0)
        #expect(s.statistics(of: a)?.requests == 1)
        #expect(s.functions[0].counters.scrubs == 0)

        try s.finishBatch(lx, requests: 0, bytes: 0)
        s.release(x)
        let lb = try #require(try pending.wait(seconds: 2)?.get())
        #expect(lb.function == 1)
    }
}
