import VirtioCore
import VirtioSystem
import VirtioTransport
import VirtioWorkloads

/// `virtio-grant guest`: a front-end process running one ``GuestWorkload``. It prints one JSON
/// line (its summary, or the typed error that stopped it; with `--reconnect`, after a line
/// `{"event":"connected",...}` once it is set up and after each reconnection) and exits 0 when every check held,
/// 1 when a check failed, 3 when the transport failed.
struct GuestCommand {
    let workload: GuestWorkload

    init(_ arguments: ArraySlice<String>) throws(UsageError) {
        let options = try Options(arguments, options: ["socket", "workload", "seconds", "requests", "payload", "domain", "mode",
                                                       "queue-size", "outstanding", "ring", "reconnect"], flags: ["bad-handle"])
        guard options.positional.isEmpty else { throw UsageError(description: "unexpected argument '\(options.positional[0])'") }
        guard let socket = options.string("socket") else { throw UsageError(description: "guest needs --socket PATH") }
        let kind = GuestWorkload.Kind(rawValue: try options.choice("workload", default: "stream", from: GuestWorkload.Kind.allCases.map(\.rawValue)))!
        var workload = GuestWorkload(socket: socket, kind: kind)
        workload.seconds = try options.seconds("seconds", default: 2)
        workload.requests = try options.int("requests", default: 10_000, in: 1...100_000_000)
        workload.payload = try options.int("payload", default: workload.payload, in: 1...(60 * 1024))
        workload.domain = try options.int("domain", default: 1, in: 1...0x7FEF)
        workload.presentsForbiddenHandle = options.flag("bad-handle")
        workload.mode = try options.choice("mode", default: "grants", from: ["grants", "gpa"]) == "grants" ? .grants : .guestPhysical
        workload.ring = FrontEndConfiguration.RingFormat(rawValue: try options.choice("ring", default: "split", from: ["split", "packed"]))!
        workload.queueSize = try options.int("queue-size", default: 256, in: 1...32768)
        // TRN-M-04: a split ring's size is a power of 2; a packed ring's need not be.
        guard workload.ring == .packed || workload.queueSize & (workload.queueSize - 1) == 0 else {
            throw UsageError(description: "--queue-size must be a power of 2 for a split ring")
        }
        workload.outstanding = try options.int("outstanding", default: 64, in: 1...workload.queueSize)
        // GHT-RCN-01: reconnect to a back-end restarted on the socket within S seconds.
        workload.reconnectSeconds = options.string("reconnect") == nil ? nil : try options.seconds("reconnect", default: 10, max: 3600)
        if workload.reconnectSeconds != nil {
            // A line once set up and after each reconnection (stream), before the summary: whoever
            // kills the back-end knows when this guest is in.
            let domain = workload.domain
            workload.onConnected = { reconnections in
                var line = JSONLine()
                line.add("event", "connected")
                line.add("domain", domain)
                line.add("reconnections", reconnections)
                StandardStream.output.writeLine(line.text)
            }
        }
        self.workload = workload
    }

    func run() -> Int32 {
        let report = workload.run()
        StandardStream.output.writeLine(report.json.text)
        return report.exitStatus
    }
}
