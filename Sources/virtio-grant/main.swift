#if canImport(Glibc)
import Glibc
#endif

let usage = """
    usage: virtio-grant <command> [options]

    commands:
      demo                 an in-process front-end/back-end exchange over a split ring
        --requests N       requests to send (default 20000)
        --json             one JSON line instead of the human summary
      bench ring           workload W1: one thread plays driver and device of a split queue
        --descs 1,2        descriptors per chain (default 1,2)
        --batch 1,32       chains per publish (default 1,32)
        --translator T     identity (default identity)
        --seconds S        CPU-seconds per run (default 1)
        --runs R           runs per variant; the median is reported (default 5)
        --reference PATH   also run the C reference binary built from shared/bench/ring_ref.c
      bench grants         grant+endAccess, map+unmap, IOTLB hit translation, 4 KiB copies
        --seconds S        CPU-seconds per run (default 1)
        --runs R           runs per measurement; the median is reported (default 5)
    """

func fail(_ message: String) -> Never {
    var stderr = StandardError()
    print("virtio-grant: \(message)\n\n\(usage)", to: &stderr)
    exit(2)
}

struct StandardError: TextOutputStream {
    mutating func write(_ string: String) {
        var text = string
        text.withUTF8 { bytes in _ = Glibc.write(2, bytes.baseAddress, bytes.count) }
    }
}

let arguments = CommandLine.arguments.dropFirst()
do throws(UsageError) {
    switch arguments.first {
    case "demo":
        exit(try DemoCommand(arguments.dropFirst()).run())
    case "bench":
        switch arguments.dropFirst().first {
        case "ring":
            try RingBenchCommand(arguments.dropFirst(2)).run()
        case "grants":
            try GrantsBenchCommand(arguments.dropFirst(2)).run()
        default:
            throw UsageError(description: "bench needs a workload: ring or grants")
        }
    case "help", "--help", "-h":
        print(usage)
    case nil:
        throw UsageError(description: "no command given")
    case let other?:
        throw UsageError(description: "unknown command '\(other)'")
    }
} catch {
    fail(error.description)
}
