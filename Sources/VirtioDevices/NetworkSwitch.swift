import VirtioCore

/// An Ethernet switch between the front-ends of one back-end process: each connected
/// ``NetworkDevice`` is a port. A frame goes to the port that owns its destination address;
/// group addresses and unknown destinations go to every other port (a flood); nothing goes
/// back to the port it came from (Spec/devices.md §2).
///
/// Isolation between the guests behind the ports (Spec/hostile-peers.md §4, GHT-ISO):
/// - every port has its own address, unique among the attached ports however many there are
///   (at most ``maxPorts``), and owns it from the moment it is attached: no other port can
///   send from it or draw its traffic (GHT-ISO-01);
/// - ports are locked by default (as a Linux bridge port with `locked on`, or Open vSwitch port
///   security): a port transmits only from its own address, other frames are dropped and
///   counted (GHT-ISO-02); an unlocked port may also send from other addresses, which the
///   switch learns within ``addressesPerPort``;
/// - each port holds at most ``floodBudget`` flooded frames of any one other port, so that a
///   guest flooding the link takes a bounded share of the others' queues (GHT-ISO-03).
public final class NetworkSwitch: Sendable {
    /// Frames a port holds for its guest before it drops new ones.
    public let portQueueLimit: Int
    /// Flooded frames (group or unknown destination) of one source port that another port
    /// holds at once (GHT-ISO-03, GHT-LIM-66).
    public let floodBudget: Int
    /// Ports attached at once (GHT-LIM-65); a device created beyond it is unplugged.
    public let maxPorts: Int
    /// Whether a port transmits only from its own address (GHT-ISO-02).
    public let lockedPorts: Bool
    /// Whether a port given its default address adopts the first unicast source address it
    /// sends from that no other port owns, and is locked to that one from then on (GHT-ISO-05,
    /// "sticky" port security). QEMU's virtio-net front-end gives the guest its own MAC
    /// (`-device virtio-net-pci,mac=...`, 52:54:00:12:34:56 by default), not the one the
    /// back-end's configuration space offers.
    public let stickyAddresses: Bool
    /// Source addresses one unlocked port may own in the address table (GHT-NET-07): a guest
    /// that sends from ever new addresses replaces its own entries instead of growing the table.
    public let addressesPerPort: Int
    /// The largest frame forwarded (a standard MTU frame with a VLAN tag; no offloads).
    public static let maxFrameSize = 1518
    private let state = Locked(State())

    private struct State {
        var ports: [Int: Port] = [:]
        /// Port numbers detached, taken again first.
        var freePorts: [Int] = []
        var nextPort = 1
        /// Each attached port's own address: a static entry, never learned over.
        var owners: [EthernetAddress: Int] = [:]
        /// Addresses learned behind unlocked ports.
        var addresses: [EthernetAddress: Int] = [:]
        var learned: [Int: Int] = [:]
    }

    private struct Port {
        weak var device: NetworkDevice?
        var mac: EthernetAddress
        /// The default address, not yet replaced by the first one the guest sent from (GHT-ISO-05).
        var sticky: Bool
    }

    /// A traffic source inside the switch, for measuring the receive path alone (GHT-NET-10):
    /// when set, every port also gets frames of this many bytes (60...1518) from
    /// ``sourceAddress``, as many as its guest has receive buffers, as DPDK's vhost PMD in
    /// testpmd's txonly mode does. `nil` (no source) by default.
    public let sourceFrameLength: Int?
    /// The source address of the frames of ``sourceFrameLength``: a locally administered unicast
    /// address no port gets by default.
    public static let sourceAddress = EthernetAddress(0x02, 0, 0, 0, 0, 0x01)

    public init(portQueueLimit: Int = 256, addressesPerPort: Int = 64, maxPorts: Int = 1024, floodBudget: Int = 64, lockedPorts: Bool = true,
                stickyAddresses: Bool = true, sourceFrameLength: Int? = nil) {
        self.sourceFrameLength = sourceFrameLength.map { min(max($0, 60), Self.maxFrameSize) }
        self.stickyAddresses = stickyAddresses
        self.portQueueLimit = max(portQueueLimit, 1)
        self.addressesPerPort = max(addressesPerPort, 1)
        self.maxPorts = min(max(maxPorts, 1), Int(UInt16.max))
        self.floodBudget = max(floodBudget, 1)
        self.lockedPorts = lockedPorts
    }

    /// The addresses learned behind unlocked ports (the ports' own addresses not counted).
    public var learnedAddressCount: Int { state.withLock { $0.addresses.count } }

    /// The ports attached now.
    public var portCount: Int { state.withLock { $0.ports.values.filter { $0.device != nil }.count } }

    /// The default address of port `port` (1...65535): 52:54:00:56 and the port number, so
    /// that no two ports share one (GHT-ISO-01).
    public static func defaultAddress(port: Int) -> EthernetAddress {
        EthernetAddress(0x52, 0x54, 0x00, 0x56, UInt8(truncatingIfNeeded: port >> 8), UInt8(truncatingIfNeeded: port))
    }

    /// Reserves a port number and its address (`mac`, or the port's default): nil when
    /// ``maxPorts`` ports are attached or another port owns the address.
    func reservePort(mac: EthernetAddress?) -> (port: Int, mac: EthernetAddress)? {
        state.withLock { s in
            guard s.ports.count < maxPorts else { return nil }
            let port: Int
            if let reused = s.freePorts.min() {
                port = reused
            } else {
                guard s.nextPort <= Int(UInt16.max) else { return nil }
                port = s.nextPort
            }
            let address = mac ?? Self.defaultAddress(port: port)
            guard s.owners[address] == nil, !address.isGroup else { return nil }
            if port == s.nextPort { s.nextPort += 1 } else { s.freePorts.removeAll { $0 == port } }
            s.owners[address] = port
            // A learned entry for the address goes: the owner draws its traffic from now on.
            if let learner = s.addresses.removeValue(forKey: address) { s.learned[learner, default: 1] -= 1 }
            s.ports[port] = Port(device: nil, mac: address, sticky: mac == nil && stickyAddresses && lockedPorts)
            return (port, address)
        }
    }

    func attach(_ device: NetworkDevice, as id: Int) {
        state.withLock { s in
            guard let port = s.ports[id] else { return }
            s.ports[id] = Port(device: device, mac: port.mac, sticky: port.sticky)
        }
    }

    func detach(_ id: Int) {
        state.withLock { s in
            guard let port = s.ports.removeValue(forKey: id) else { return }
            s.owners[port.mac] = nil
            s.addresses = s.addresses.filter { $0.value != id }
            s.learned[id] = nil
            s.freePorts.append(id)
        }
    }

    /// Decides where each frame of `burst` (from port `source`) goes, under one hold of the
    /// switch's lock for the whole burst (GHT-NET-09): `burst.routes` gets, per frame, the
    /// index of its target in `burst.targets`, or ``TransmitBurst/flood`` (the other ports are
    /// then in `burst.floodTargets`), or a drop. The frames themselves are not touched here.
    func route(_ burst: inout TransmitBurst, from source: Int) {
        state.withLock { s in
            // The sending port is looked up once per burst, and the route of the last
            // destination is kept while nothing the burst does changes the tables (learning,
            // adoption): a burst to one destination costs one table lookup, not one per frame.
            guard var port = s.ports[source] else {
                for k in 0..<burst.frames.count { burst.routes[k] = TransmitBurst.unplugged }
                return
            }
            var last: (destination: EthernetAddress, route: Int)?
            for k in 0..<burst.frames.count {
                let (destination, sender) = (burst.frames[k].destination, burst.frames[k].source)
                if sender != port.mac || port.sticky {
                    last = nil
                    guard admit(sender, port: &port, source, &s) else {
                        burst.routes[k] = TransmitBurst.spoofed
                        continue
                    }
                }
                if let last, last.destination == destination {
                    burst.routes[k] = last.route
                } else {
                    burst.routes[k] = destinationRoute(destination, from: source, &s, &burst)
                    last = (destination, burst.routes[k])
                }
            }
        }
    }

    /// Whether port `source` (`port`, its entry) may send from `sender`: GHT-ISO-05 adoption,
    /// GHT-ISO-02 locking and learning. Updates the tables and `port`.
    private func admit(_ sender: EthernetAddress, port: inout Port, _ source: Int, _ s: inout State) -> Bool {
        if sender != port.mac, port.sticky, !sender.isGroup, s.owners[sender] == nil, s.addresses[sender] == nil {
            // GHT-ISO-05: the guest's own address, adopted once; the port is locked to it.
            s.owners[port.mac] = nil
            s.owners[sender] = source
            port.mac = sender
            port.sticky = false
            s.ports[source] = port
        } else if sender == port.mac, port.sticky {
            port.sticky = false   // it sends from the address it was given: locked to that
            s.ports[source] = port
        }
        if sender != port.mac {
            // GHT-ISO-02: a locked port sends from its own address only; no port ever sends
            // from another port's, nor from a group address.
            guard !lockedPorts, !sender.isGroup, s.owners[sender] == nil else { return false }
            if s.addresses[sender] != source { Self.learn(sender, port: source, &s, limit: addressesPerPort) }
        }
        return true
    }

    /// GHT-NET-03: a known address's port, or every other port (a flood), never the sender.
    private func destinationRoute(_ destination: EthernetAddress, from source: Int, _ s: inout State, _ burst: inout TransmitBurst) -> Int {
        if !destination.isGroup, let target = s.owners[destination] ?? s.addresses[destination] {
            guard target != source, let device = s.ports[target]?.device else { return TransmitBurst.nowhere }
            return burst.target(device)
        }
        if !burst.hasFloodTargets {
            for (id, other) in s.ports where id != source {
                if let device = other.device { burst.floodTargets.append(device) }
            }
            burst.hasFloodTargets = true
        }
        return TransmitBurst.flood
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
