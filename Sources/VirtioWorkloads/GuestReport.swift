import VirtioSystem
import VirtioCore
import VirtioTransport

/// What one ``GuestWorkload`` did, and whether every check held.
public struct GuestReport: Sendable {
    /// Round-trip times of the latency workload, in microseconds.
    public struct RoundTrip: Sendable, Equatable {
        public var p50: Double
        public var p99: Double
        public var mean: Double
    }

    /// The workload that ran.
    public let workload: GuestWorkload
    /// Requests completed and checked.
    public var chains = 0
    public var bytesSent = 0
    public var bytesReceived = 0
    /// Replies that differed from what the request should give, and completions that should
    /// not have happened.
    public var mismatches = 0
    /// Forbidden handles the back-end refused (``GuestWorkload/presentsForbiddenHandle``).
    public var faultsBlocked = 0
    public var resets = 0
    public var grantsMade = 0
    public var grantsEnded = 0
    /// Times the front-end reconnected to a restarted back-end (``GuestWorkload/reconnectSeconds``).
    public var reconnects = 0
    /// Wall-clock seconds from connecting to closing.
    public var seconds = 0.0
    /// The latency workload's round trips.
    public var roundTrip: RoundTrip?
    /// The transport error that stopped the workload (a `FrontEndError`'s description).
    public var error: String?

    init(workload: GuestWorkload) { self.workload = workload }

    /// Every check held: no error, every reply right, the forbidden handle (if presented)
    /// refused once, every grant ended.
    public var ok: Bool {
        error == nil && mismatches == 0 && faultsBlocked == (workload.presentsForbiddenHandle ? 1 : 0) && grantsEnded == grantsMade
    }

    /// The `guest` command's exit status: 0 when every check held, 1 when a check failed, 3
    /// when the transport failed.
    public var exitStatus: Int32 { error != nil ? 3 : ok ? 0 : 1 }

    /// The summary line the `guest` command prints.
    public var json: JSONLine {
        var line = JSONLine()
        line.add("guest", workload.domain)
        line.add("workload", workload.kind.rawValue)
        line.add("mode", workload.mode == .grants ? "grants" : "gpa")
        line.add("ring", workload.ring.rawValue)
        if let roundTrip {
            line.add("rtt_p50_us", roundTrip.p50, decimals: 1)
            line.add("rtt_p99_us", roundTrip.p99, decimals: 1)
            line.add("rtt_mean_us", roundTrip.mean, decimals: 1)
        }
        line.add("chains", chains)
        line.add("bytes_sent", bytesSent)
        line.add("bytes_received", bytesReceived)
        line.add("mismatches", mismatches)
        line.add("faults_blocked", faultsBlocked)
        line.add("resets", resets)
        line.add("grants_made", grantsMade)
        line.add("grants_ended", grantsEnded)
        line.add("reconnects", reconnects)
        line.add("seconds", seconds, decimals: 3)
        if let error { line.add("error", error) }
        line.add("ok", ok)
        return line
    }
}
