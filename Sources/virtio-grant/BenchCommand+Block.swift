import VirtioBenchmarks

extension BenchCommand {
    /// `virtio-grant bench blk`: which back-ends, cache modes, operations, depths, queue counts
    /// and clients (comma-separated lists), how long per point, and how to start our back-end.
    static func blockBenchmark(_ arguments: ArraySlice<String>) throws(UsageError) -> BlockBenchmark {
        let options = try Options(arguments, options: ["backend", "cache", "op", "depth", "queues", "client", "seconds", "warmup",
                                                       "image-mib", "queue-size", "serve-arg", "qsd", "generator-core", "backend-core",
                                                       "verify-blocks"])
        try noPositional(options)
        var b = BlockBenchmark()
        b.backEnds = try list(options, "backend", BlockBenchmark.BackEndKind.self, default: b.backEnds)
        b.caches = try list(options, "cache", BlockBenchmark.Cache.self, default: b.caches)
        b.operations = try list(options, "op", BlockBenchmark.Operation.self, default: b.operations)
        b.clients = try list(options, "client", BlockBenchmark.Client.self, default: b.clients)
        b.depths = try options.ints("depth", default: b.depths, in: 1...1024)
        b.queueCounts = try options.ints("queues", default: b.queueCounts, in: 1...16)
        b.seconds = try options.seconds("seconds", default: b.seconds, max: 600)
        b.warmUp = try options.seconds("warmup", default: b.warmUp, max: 60)
        b.imageMiB = try options.int("image-mib", default: b.imageMiB, in: 1...4096)
        b.queueSize = try options.int("queue-size", default: b.queueSize, in: 1...32768)
        guard b.queueSize & (b.queueSize - 1) == 0, b.depths.allSatisfy({ $0 <= b.queueSize }) else {
            throw UsageError(description: "--queue-size must be a power of 2 and at least every --depth")
        }
        // Each --serve-arg is split at spaces: --serve-arg '--aio io_uring'.
        b.serveArguments = options.strings("serve-arg").flatMap { $0.split(separator: " ").map(String.init) }
        b.qsdPath = options.string("qsd") ?? b.qsdPath
        // -1: leave that side unpinned.
        let generator = try options.int("generator-core", default: 0, in: -1...1023)
        let backEnd = try options.int("backend-core", default: 1, in: -1...1023)
        b.generatorCore = generator < 0 ? nil : generator
        b.backEndCore = backEnd < 0 ? nil : backEnd
        b.verifyBlocks = try options.int("verify-blocks", default: b.verifyBlocks, in: 1...4096)
        return b
    }

    /// A comma-separated list of the raw values of `T`.
    private static func list<T: RawRepresentable<String>>(_ options: Options, _ name: String, _: T.Type, default value: [T]) throws(UsageError) -> [T] {
        guard let text = options.string(name) else { return value }
        var result: [T] = []
        for part in text.split(separator: ",") {
            guard let item = T(rawValue: String(part)) else { throw UsageError(description: "--\(name): unknown value '\(part)'") }
            result.append(item)
        }
        guard !result.isEmpty else { throw UsageError(description: "--\(name) needs at least one value") }
        return result
    }
}
