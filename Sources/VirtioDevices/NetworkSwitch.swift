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
        var learned: [Int: Int] = [:]
    }

    private struct WeakPort {
        weak var port: NetworkDevice?
    }

    /// Source addresses one port may own in the address table (GHT-NET-07): a guest that sends
    /// from ever new addresses replaces its own entries instead of growing the table.
    public let addressesPerPort: Int

    public init(portQueueLimit: Int = 256, addressesPerPort: Int = 64) {
        self.portQueueLimit = portQueueLimit
        self.addressesPerPort = addressesPerPort
    }

    /// The addresses learned, for every port.
    public var learnedAddressCount: Int { state.withLock { $0.addresses.count } }

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
            s.learned[id] = nil
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
            if !sender.isGroup, s.addresses[sender] != source { Self.learn(sender, port: source, &s, limit: addressesPerPort) }
            if !destination.isGroup, let port = s.addresses[destination] {
                return port == source ? [] : [s.ports[port]?.port].compactMap { $0 }
            }
            return s.ports.filter { $0.key != source }.compactMap { $0.value.port }
        }
        var delivered = 0
        for port in targets where port.enqueue(frame) { delivered += 1 }
        return delivered
    }

    /// Records that `address` is behind `port`, within the port's share of the table.
    private static func learn(_ address: EthernetAddress, port: Int, _ s: inout State, limit: Int) {
        if let previous = s.addresses[address] { s.learned[previous, default: 1] -= 1 }
        if s.learned[port, default: 0] >= limit, let evicted = s.addresses.first(where: { $0.value == port })?.key {
            s.addresses[evicted] = nil
            s.learned[port, default: 1] -= 1
        }
        s.addresses[address] = port
        s.learned[port, default: 0] += 1
    }
}
