import VirtioSystem
import VirtioCore
import VirtioDevices
import VirtioTransport

/// A second guest for a network back-end: it connects as a virtio-net front-end and answers
/// ARP requests for its address and ICMP echo requests to it for a while. What
/// `virtio-grant net-peer` runs in its own process (the interop script's peer of a Linux
/// guest); a test runs it in its own.
public struct NetPeer: Sendable {
    /// The back-end's unix socket.
    public var socket: String
    /// Its IPv4 address (4 bytes).
    public var address: [UInt8]
    /// How long it answers.
    public var seconds: Double
    /// The run is ok only if at least this many echo requests were answered.
    public var expectEchoes = 0
    public var mode = FrontEndConfiguration.AddressMode.grants

    public init(socket: String, address: [UInt8] = [10, 0, 2, 2], seconds: Double = 30) {
        self.socket = socket
        self.address = address
        self.seconds = seconds
    }

    /// What the peer did.
    public struct Report: Sendable {
        /// Its MAC address, once connected.
        public var mac: EthernetAddress?
        public var framesReceived = 0
        public var arpReplies = 0
        public var echoReplies = 0
        /// The transport error that stopped it.
        public var error: String?
        let expectEchoes: Int

        /// No error and at least the expected echo replies.
        public var ok: Bool { error == nil && echoReplies >= expectEchoes }

        /// The `net-peer` command's exit status: 0 ok, 1 too few echoes, 3 the transport failed.
        public var exitStatus: Int32 { error != nil ? 3 : ok ? 0 : 1 }

        /// The line the `net-peer` command prints at the end.
        public var json: JSONLine {
            var line = JSONLine()
            line.add("event", "net-peer")
            if let error {
                line.add("error", error)
                if mac != nil { line.add("frames_received", framesReceived) }
                return line
            }
            if let mac { line.add("mac", mac.description) }
            line.add("frames_received", framesReceived)
            line.add("arp_replies", arpReplies)
            line.add("echo_replies", echoReplies)
            line.add("ok", ok)
            return line
        }
    }

    /// Connects and answers until ``seconds`` pass; `ready` is called once connected, with the
    /// line the `net-peer` command prints then (`net-peer-ready`, its MAC and IP).
    public func run(ready: (JSONLine) -> Void = { _ in }) -> Report {
        var report = Report(expectEchoes: expectEchoes)
        var configuration = FrontEndConfiguration()
        configuration.mode = mode
        let peer: NetworkFrontEnd
        do {
            peer = try NetworkFrontEnd(socketPath: socket, configuration: configuration)
        } catch {
            report.error = "\(error)"
            return report
        }
        report.mac = peer.mac
        let responder = IPv4Responder(mac: peer.mac, address: address)
        let deadline = SystemClock.monotonic.seconds + seconds
        var line = JSONLine()
        line.add("event", "net-peer-ready")
        line.add("mac", peer.mac.description)
        line.add("ip", address.map(String.init).joined(separator: "."))
        ready(line)
        do throws(FrontEndError) {
            while SystemClock.monotonic.seconds < deadline {
                for frame in try peer.receive(timeoutMilliseconds: 100) {
                    report.framesReceived += 1
                    switch responder.answer(frame) {
                    case .arpReply(let reply)?:
                        try peer.send(reply)
                        report.arpReplies += 1
                    case .echoReply(let reply)?:
                        try peer.send(reply)
                        report.echoReplies += 1
                    case nil:
                        break
                    }
                }
            }
        } catch {
            report.error = "\(error)"
            return report
        }
        peer.close()
        return report
    }
}
