import VirtioSystem
import VirtioDevices
import VirtioTransport
import VirtioWorkloads

/// `virtio-grant net-peer`: a ``NetPeer`` in a process of its own. It prints a
/// `net-peer-ready` line once connected and one JSON line at the end: frames received,
/// replies sent. Exit 0 when it answered at least `--expect-echoes` echo requests, 1
/// otherwise, 3 when the transport failed.
struct NetPeerCommand {
    let peer: NetPeer

    init(_ arguments: ArraySlice<String>) throws(UsageError) {
        let options = try Options(arguments, options: ["socket", "ip", "seconds", "expect-echoes", "mode"])
        guard options.positional.isEmpty else { throw UsageError(description: "unexpected argument '\(options.positional[0])'") }
        guard let socket = options.string("socket") else { throw UsageError(description: "net-peer needs --socket PATH") }
        let text = options.string("ip") ?? "10.0.2.2"
        guard let address = IPv4Responder.parseAddress(text) else { throw UsageError(description: "--ip must be an IPv4 address, not '\(text)'") }
        var peer = NetPeer(socket: socket, address: address, seconds: try options.seconds("seconds", default: 30))
        peer.expectEchoes = try options.int("expect-echoes", default: 0, in: 0...1_000_000)
        peer.mode = try options.choice("mode", default: "grants", from: ["grants", "gpa"]) == "grants" ? .grants : .guestPhysical
        self.peer = peer
    }

    func run() -> Int32 {
        let report = peer.run { StandardStream.output.writeLine($0.text) }
        StandardStream.output.writeLine(report.json.text)
        return report.exitStatus
    }
}
