import VirtioBenchmarks
import VirtioWorkloads

extension BenchCommand {
    /// `bench net [--seconds 5] [--warmup 2] [--runs 1] [--queue-size 256] [--direction txonly|rxonly|both]
    /// [--binary LABEL=PATH ...] [--source-binary LABEL=PATH ...] [--reference on|off]`.
    static func net(_ arguments: ArraySlice<String>) throws(UsageError) -> NetBenchmark {
        let options = try Options(arguments, options: ["seconds", "warmup", "runs", "queue-size", "direction", "binary", "reference", "source-binary"])
        try noPositional(options)
        let queueSize = try options.int("queue-size", default: 256, in: 64...1024)
        guard queueSize & (queueSize - 1) == 0 else { throw UsageError(description: "--queue-size must be a power of 2") }
        let direction = try options.choice("direction", default: "both", from: ["txonly", "rxonly", "both"])
        // --binary LABEL=PATH, repeatable: the builds of virtio-grant to serve (A/B); this one by default.
        let own: String
        do { own = try SpawnedCommand.executablePath } catch { throw UsageError(description: "cannot find this executable: \(error)") }
        var binaries = try labelled(options.strings("binary"))
        if binaries.isEmpty { binaries = [("ours", own)] }
        // --source-binary LABEL=PATH: rxonly from the switch's traffic source too (this one by default).
        var sourceBinaries = try labelled(options.strings("source-binary"))
        if sourceBinaries.isEmpty { sourceBinaries = [(binaries.count == 1 ? binaries[0].label : "ours", own)] }
        return NetBenchmark(seconds: try options.int("seconds", default: 5, in: 1...600), warmup: try options.int("warmup", default: 2, in: 0...60),
                            runs: try options.int("runs", default: 1, in: 1...20), queueSize: queueSize,
                            directions: direction == "both" ? ["txonly", "rxonly"] : [direction], binaries: binaries,
                            reference: try options.choice("reference", default: "on", from: ["on", "off"]) == "on", sourceBinaries: sourceBinaries)
    }

    /// `LABEL=PATH` arguments.
    static func labelled(_ values: [String]) throws(UsageError) -> [(label: String, path: String)] {
        var result: [(label: String, path: String)] = []
        for b in values {
            guard let eq = b.firstIndex(of: "="), eq != b.startIndex else { throw UsageError(description: "--binary and --source-binary take LABEL=PATH") }
            result.append((String(b[..<eq]), String(b[b.index(after: eq)...])))
        }
        return result
    }
}
