import VirtioCore
import VirtioTransport

/// A learning Ethernet switch between the front-ends of one back-end process: each connected
/// ``NetworkDevice`` is a port. A frame goes to the port that last sent from its destination
/// address; group addresses and unknown destinations go to every other port; nothing goes back
/// to the port it came from (Spec/devices.md §2).
///
/// Each port has a bounded queue of frames waiting for receive buffers: a guest that posts
/// none fills its own queue and then loses its own frames, never another guest's.
public final class NetworkSwitch: Sendable {
    /// Frames a port holds for its guest before it drops new ones.
    public let portQueueLimit: Int
    /// The largest frame forwarded (a standard MTU frame with a VLAN tag; no offloads).
    public static let maxFrameSize = 1518
    private let state = Locked(State())

    private struct State {
        var nextPort = 1
        var ports: [Int: WeakPort] = [:]
        var addresses: [EthernetAddress: Int] = [:]
    }

    private struct WeakPort {
        weak var port: NetworkDevice?
    }

    public init(portQueueLimit: Int = 256) {
        self.portQueueLimit = portQueueLimit
    }

    /// A new port number, from 1.
    func reservePort() -> Int {
        state.withLock { s in
            defer { s.nextPort += 1 }
            return s.nextPort
        }
    }

    func attach(_ port: NetworkDevice, as id: Int) {
        state.withLock { $0.ports[id] = WeakPort(port: port) }
    }

    func detach(_ id: Int) {
        state.withLock { s in
            s.ports[id] = nil
            s.addresses = s.addresses.filter { $0.value != id }
        }
    }

    /// The ports attached now.
    public var portCount: Int { state.withLock { $0.ports.values.filter { $0.port != nil }.count } }

    /// Forwards `frame` (Ethernet header first) that port `source` transmitted; returns how
    /// many ports it was queued for.
    @discardableResult
    func forward(_ frame: [UInt8], from source: Int) -> Int {
        guard frame.count >= 14, let destination = EthernetAddress(frame), let sender = EthernetAddress(frame, offset: 6) else { return 0 }
        let targets: [NetworkDevice] = state.withLock { s in
            if !sender.isGroup { s.addresses[sender] = source }
            if !destination.isGroup, let port = s.addresses[destination] {
                return port == source ? [] : [s.ports[port]?.port].compactMap { $0 }
            }
            return s.ports.filter { $0.key != source }.compactMap { $0.value.port }
        }
        var delivered = 0
        for port in targets where port.enqueue(frame) { delivered += 1 }
        return delivered
    }
}
