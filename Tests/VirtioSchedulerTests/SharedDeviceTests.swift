import Testing
import VirtioSystem
import VirtioCore
import VirtioDevices
import VirtioScheduler
import VirtioTransport
import VirtioWorkloads

/// What one guest of a shared device did: its workload's report, its session's report, and
/// what the scheduler gave it (nil: it was never a guest of the scheduler).
struct SharedGuestRun {
    var workload: GuestReport
    var session: SessionReport?
    var statistics: GuestStatistics?
}

/// A ``SharedDevice`` (echo device) in this process sharing `vfs` functions among `guests`
/// guests (throughput workload, each on a thread of its own), started one after the other so
/// that session k is guest k: what `serve --vfs` sets up, used directly.
func runSharedDevice(vfs: Int, mapping: FunctionMapping, guests: Int, seconds: Double = 1) throws -> (guests: [SharedGuestRun], elapsed: Double) {
    var configuration = SharedDeviceConfiguration()
    configuration.functionCount = vfs
    configuration.scheduler.mapping = mapping
    configuration.scheduler.sliceNanoseconds = 2_000_000
    let shared = try SharedDevice(configuration) { EchoDevice(queueCount: 1, maxQueueSize: 32768) }
    defer { shared.stop() }
    let directory = try TemporaryDirectory(prefix: "vg-shared")
    defer { directory.remove() }
    let listener = try #require(shared.listeners(socket: directory.path + "/backend.sock").first)
    // The scheduler forgets a guest once its session ends: take its statistics then, as serve does.
    let ended = Locked<[Int: (SessionReport, GuestStatistics?)]>([:])
    var backEndConfiguration = BackEndConfiguration()
    backEndConfiguration.onSessionEnd = { report in
        let stats = shared.guest(ofSession: report.id, on: listener)?.statistics
        ended.withLock { $0[report.id] = (report, stats) }
    }
    let backEnd = try shared.backEnd(for: listener, configuration: backEndConfiguration)
    backEnd.start()
    defer { backEnd.stop() }
    let start = SystemClock.monotonic.seconds
    let reports = Locked<[Int: GuestReport]>([:])
    var threads: [WorkerThread] = []
    for g in 1...guests {
        var workload = GuestWorkload(socket: listener.socket, kind: .throughput)
        workload.domain = g
        workload.seconds = seconds
        workload.outstanding = 32
        threads.append(WorkerThread(name: "guest\(g)") { [workload] in
            let report = workload.run()
            reports.withLock { $0[g] = report }
        })
        // Connection order is guest order: wait until the back-end has this session.
        SystemClock.sleep(milliseconds: 150)
    }
    threads.forEach { $0.join() }
    let elapsed = SystemClock.monotonic.seconds - start
    for _ in 0..<5000 where ended.withLock({ $0.count }) < guests { SystemClock.sleep(milliseconds: 1) }
    let sessions = ended.withLock { $0 }
    let runs = (1...guests).map { g in
        SharedGuestRun(workload: reports.withLock { $0[g]! }, session: sessions[g]?.0, statistics: sessions[g]?.1)
    }
    return (runs, elapsed)
}

/// Checks that each of the first `count` guests held its checks and was served with no
/// broken queue; returns the seconds they held functions, summed.
func expectServed(_ guests: [SharedGuestRun], count: Int) throws -> Double {
    var held = 0.0
    for g in 0..<count {
        #expect(guests[g].workload.ok, "guest \(g + 1): \(guests[g].workload.json.text)")
        let stats = try #require(guests[g].statistics, "guest \(g + 1) was a guest of the scheduler")
        #expect(stats.requests > 0)
        #expect(guests[g].session?.brokenQueues.isEmpty == true)
        held += Double(stats.holdNanoseconds) / 1e9
    }
    return held
}

@Suite("Guests sharing the virtual functions of a SharedDevice", .serialized)
struct SharedDeviceTests {
    @Test("GHT-SCH-01: 1:1 — two guests each get a function of their own; a third is refused and its queue broken")
    func oneToOne() throws {
        let r = try runSharedDevice(vfs: 2, mapping: .oneToOne, guests: 3)
        for g in 0..<2 {
            #expect(r.guests[g].workload.ok, "guest \(g + 1): \(r.guests[g].workload.json.text)")
            let stats = try #require(r.guests[g].statistics)
            #expect(stats.requests > 0)
            // Nobody else may use its function: it is never preempted.
            #expect(stats.preemptions == 0)
        }
        let third = r.guests[2]
        #expect(!third.workload.ok && third.workload.exitStatus != 0, "the third guest has no function: \(third.workload.json.text)")
        #expect(third.session?.brokenQueues.count == 1)
        #expect(third.statistics == nil)
    }

    @Test("GHT-SCH-01, GHT-SCH-02: 1:n — three guests time-share one function; their holds never overlap")
    func oneToMany() throws {
        let r = try runSharedDevice(vfs: 1, mapping: .shared(0), guests: 3)
        let held = try expectServed(r.guests, count: 3)
        // One function, one holder at a time: the holds add up to at most the time that passed.
        #expect(held > 0 && held <= r.elapsed + 0.05, "held \(held) s in \(r.elapsed) s")
    }

    @Test("GHT-SCH-01: n:m — three guests on a pool of two functions, all served, at most two holds at once")
    func pool() throws {
        let r = try runSharedDevice(vfs: 2, mapping: .pool, guests: 3)
        let held = try expectServed(r.guests, count: 3)
        #expect(held > 0 && held <= 2 * r.elapsed + 0.05, "held \(held) s in \(r.elapsed) s")
    }

    @Test("GHT-ISO-04: a SharedDevice checks its named guests as serve checks --guest: names, sockets, windows, weights")
    func validation() throws {
        func refusal(_ model: SharedDeviceModel, _ guests: [NamedGuest], weights: [Int] = [], windowSectors: UInt64? = nil) -> SharedDeviceError? {
            var configuration = SharedDeviceConfiguration()
            configuration.model = model
            configuration.guests = guests
            configuration.weights = weights
            configuration.windowSectors = windowSectors
            do {
                _ = try SharedDevice(configuration) { EchoDevice(queueCount: 1, maxQueueSize: 256) }.stop()
                return nil
            } catch {
                return error
            }
        }
        let a = try NamedGuest(name: "a", socket: "/tmp/a"), b = try NamedGuest(parsing: "b=/tmp/b,weight=2")
        #expect(b.weight == 2 && b.window == nil)
        #expect(refusal(.opaque, [a, b]) == nil)
        #expect(refusal(.opaque, [a, try NamedGuest(name: "a", socket: "/tmp/c")]) == .duplicateName("a"))
        #expect(refusal(.opaque, [a, try NamedGuest(name: "c", socket: "/tmp/a")]) == .duplicateSocket("/tmp/a"))
        #expect(refusal(.opaque, [a], weights: [2]) == .weightsWithNamedGuests)
        #expect(refusal(.opaque, [try NamedGuest(name: "w", socket: "/tmp/w", window: 0..<8)]) == .windowNotForDevice(guest: "w"))
        #expect(refusal(.block, [a]) == .missingWindow(guest: "a"))
        #expect(refusal(.block, []) == .noWindowSectors)
        #expect(refusal(.block, [a, b], windowSectors: 64) == nil)
        #expect(refusal(.block, [try NamedGuest(name: "x", socket: "/tmp/x", window: 0..<8), try NamedGuest(name: "y", socket: "/tmp/y", window: 4..<12)])
                == .overlappingWindows(guest: "y", other: "x"))
        #expect(throws: SharedDeviceError.malformedGuest("a b=/tmp/a", reason: "a name is 1 to 32 letters, digits, '.', '_' or '-'")) {
            try NamedGuest(name: "a b", socket: "/tmp/a")
        }
        #expect(throws: SharedDeviceError.malformedGuest("a=/tmp/a", reason: "weight is an integer in 1...1000")) {
            try NamedGuest(name: "a", socket: "/tmp/a", weight: 0)
        }
        #expect(SharedDeviceError.overlappingWindows(guest: "b", other: "a").description == "--guest b: its window overlaps a's")
    }
}
