import VirtioBenchmarks
import VirtioTransport

/// `virtio-grant bench ring|grants|xproc|sched|net|blk`: the options of each benchmark of
/// VirtioBenchmarks, parsed strictly.
enum BenchCommand {
    static func run(_ arguments: ArraySlice<String>) throws(UsageError) -> Int32 {
        let rest = arguments.dropFirst()
        switch arguments.first {
        case "ring":
            let suite = try ring(rest)
            do throws(BenchmarkError) {
                try suite.run()
            } catch {
                throw UsageError(description: error.description)
            }
            return 0
        case "grants":
            let options = try Options(rest, options: ["seconds", "runs"])
            try noPositional(options)
            GrantsBenchmark(seconds: try options.seconds("seconds", default: 1, max: 60), runs: try options.int("runs", default: 5, in: 1...100)).run()
            return 0
        case "xproc":
            return try xproc(rest).run()
        case "net": return try net(rest).run()
        case "blk": return try blockBenchmark(rest).run()
        case "sched":
            let options = try Options(rest, options: ["seconds", "runs", "service-us"])
            try noPositional(options)
            return SchedulerBenchmark(seconds: try options.seconds("seconds", default: 2, max: 60), runs: try options.int("runs", default: 3, in: 1...100),
                                      serviceMicroseconds: try options.int("service-us", default: 20, in: 1...10_000)).run()
        default:
            throw UsageError(description: "bench needs a workload: ring, grants, xproc, sched, net or blk")
        }
    }

    static func ring(_ arguments: ArraySlice<String>) throws(UsageError) -> RingBenchmarkSuite {
        let options = try Options(arguments, options: ["descs", "batch", "translator", "ring", "seconds", "runs", "reference"])
        try noPositional(options)
        let translator = try options.choice("translator", default: "both", from: ["identity", "grant", "both"])
        let ring = try options.choice("ring", default: "both", from: ["split", "packed", "both"])
        return RingBenchmarkSuite(descs: try options.ints("descs", default: [1, 2], in: 1...2),
                                  batches: try options.ints("batch", default: [1, 32], in: 1...RingBenchmarkSuite.maxBatch),
                                  translators: translator == "both" ? ["identity", "grant"] : [translator],
                                  rings: ring == "both" ? ["split", "packed"] : [ring],
                                  seconds: try options.seconds("seconds", default: 1, max: 60),
                                  runs: try options.int("runs", default: 5, in: 1...100),
                                  reference: options.string("reference"))
    }

    static func xproc(_ arguments: ArraySlice<String>) throws(UsageError) -> XprocBenchmark {
        let options = try Options(arguments, options: ["seconds", "runs", "payload", "queue-size", "requests", "mode", "poll", "idle-seconds", "inflight", "ring"])
        try noPositional(options)
        let seconds = try options.seconds("seconds", default: 2, max: 600)
        let runs = try options.int("runs", default: 3, in: 1...100)
        let payload = try options.int("payload", default: 4096, in: 1...(60 * 1024))
        let queueSize = try options.int("queue-size", default: 256, in: 1...32768)
        guard queueSize & (queueSize - 1) == 0 else { throw UsageError(description: "--queue-size must be a power of 2") }
        let requests = try options.int("requests", default: 20_000, in: 1...10_000_000)
        let mode = try options.choice("mode", default: "both", from: ["grants", "gpa", "both"])
        let execution: QueueExecution = options.string("poll") == nil ? .sleeping : .polling(idleMicroseconds: try options.int("poll", default: 50, in: 0...10_000_000))
        var benchmark = XprocBenchmark(seconds: seconds, runs: runs, payload: payload, queueSize: queueSize, requests: requests,
                                       modes: mode == "both" ? ["grants", "gpa"] : [mode], execution: execution,
                                       idleSeconds: try options.seconds("idle-seconds", default: 2, max: 600))
        // --inflight off: the back-end does not offer INFLIGHT_SHMFD (the cost of tracking, by difference).
        benchmark.tracksInflight = try options.choice("inflight", default: "on", from: ["on", "off"]) == "on"
        benchmark.ring = try options.choice("ring", default: "split", from: ["split", "packed"])
        return benchmark
    }

    static func noPositional(_ options: Options) throws(UsageError) {
        guard options.positional.isEmpty else { throw UsageError(description: "unexpected argument '\(options.positional[0])'") }
    }
}
