#if canImport(Glibc)
import Glibc
#endif
import VirtioCore
import VirtioDevices
import VirtioTransport

/// `virtio-grant net-peer`: a second guest for a network back-end. It connects as a virtio-net
/// front-end, answers ARP requests for `--ip` and ICMP echo requests to it for `--seconds`,
/// and prints one JSON line: frames received, replies sent. Exit 0 when it answered at least
/// `--expect-echoes` echo requests, 1 otherwise, 3 when the transport failed.
struct NetPeerCommand {
    let socket: String
    let address: [UInt8]
    let seconds: Double
    let expectEchoes: Int
    let mode: FrontEndConfiguration.AddressMode

    init(_ arguments: ArraySlice<String>) throws(UsageError) {
        let options = try Options(arguments, options: ["socket", "ip", "seconds", "expect-echoes", "mode"])
        guard options.positional.isEmpty else { throw UsageError(description: "unexpected argument '\(options.positional[0])'") }
        guard let socket = options.string("socket") else { throw UsageError(description: "net-peer needs --socket PATH") }
        self.socket = socket
        let text = options.string("ip") ?? "10.0.2.2"
        guard let address = IPv4Responder.parseAddress(text) else { throw UsageError(description: "--ip must be an IPv4 address, not '\(text)'") }
        self.address = address
        seconds = try options.seconds("seconds", default: 30)
        expectEchoes = try options.int("expect-echoes", default: 0, in: 0...1_000_000)
        mode = try options.choice("mode", default: "grants", from: ["grants", "gpa"]) == "grants" ? .grants : .guestPhysical
    }

    func run() -> Int32 {
        var line = JSONLine()
        line.add("event", "net-peer")
        var configuration = FrontEndConfiguration()
        configuration.mode = mode
        let peer: NetworkFrontEnd
        do {
            peer = try NetworkFrontEnd(socketPath: socket, configuration: configuration)
        } catch {
            line.add("error", "\(error)")
            line.emit()
            return 3
        }
        let responder = IPv4Responder(mac: peer.mac, address: address)
        var received = 0, arpReplies = 0, echoReplies = 0
        let deadline = monotonicSeconds() + seconds
        var ready = JSONLine()
        ready.add("event", "net-peer-ready")
        ready.add("mac", peer.mac.description)
        ready.add("ip", address.map(String.init).joined(separator: "."))
        ready.emit()
        do throws(FrontEndError) {
            while monotonicSeconds() < deadline {
                for frame in try peer.receive(timeoutMilliseconds: 100) {
                    received += 1
                    switch responder.answer(frame) {
                    case .arpReply(let reply)?:
                        try peer.send(reply)
                        arpReplies += 1
                    case .echoReply(let reply)?:
                        try peer.send(reply)
                        echoReplies += 1
                    case nil:
                        break
                    }
                }
            }
        } catch {
            line.add("error", "\(error)")
            line.add("frames_received", received)
            line.emit()
            return 3
        }
        peer.close()
        line.add("mac", peer.mac.description)
        line.add("frames_received", received)
        line.add("arp_replies", arpReplies)
        line.add("echo_replies", echoReplies)
        line.add("ok", echoReplies >= expectEchoes)
        line.emit()
        return echoReplies >= expectEchoes ? 0 : 1
    }
}
