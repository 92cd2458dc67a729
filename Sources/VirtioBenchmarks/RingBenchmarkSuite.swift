import VirtioSystem

/// `virtio-grant bench ring`: W1 for every combination of descriptors per chain, batch,
/// translator and ring format asked for, one JSON line each; with a reference binary (built
/// from shared/bench/ring_ref.c), its lines after each batch size.
public struct RingBenchmarkSuite: Sendable {
    /// Descriptors per chain (1 or 2 each).
    public var descs: [Int]
    /// Chains per publish (1...128 each).
    public var batches: [Int]
    /// "identity" and/or "grant".
    public var translators: [String]
    /// "split" and/or "packed".
    public var rings: [String]
    public var seconds: Double
    public var runs: Int
    /// The C reference binary, if it runs too.
    public var reference: String?

    public init(descs: [Int], batches: [Int], translators: [String], rings: [String], seconds: Double, runs: Int, reference: String?) {
        self.descs = descs
        self.batches = batches
        self.translators = translators
        self.rings = rings
        self.seconds = seconds
        self.runs = runs
        self.reference = reference
    }

    /// The largest batch: half the queue.
    public static let maxBatch = RingBenchmark.queueSize / 2

    public func run() throws(BenchmarkError) {
        for translator in translators {
        for d in descs {
            for b in batches {
                for ring in rings {
                    let benchmark = RingBenchmark(descs: d, batch: b, packed: ring == "packed", seconds: seconds, runs: runs)
                    print((translator == "grant" ? benchmark.runGranted() : benchmark.runIdentity()).text)
                }
                if let reference {
                    let args = [String(d), String(b), translator, String(seconds), String(runs)]
                    guard let run = try? ChildProcess.run(path: reference, arguments: args), run.status == .exited(0) else {
                        throw BenchmarkError(description: "could not run the reference '\(reference)'")
                    }
                    let output = run.standardOutput
                    print(output, terminator: output.hasSuffix("\n") ? "" : "\n")
                }
            }
        }
        }
    }
}
