/// The frames of one transmitted batch on their way through the switch: scratch space each
/// port keeps for its transmit queue and reuses for every batch, so that forwarding allocates
/// nothing per frame or per batch once it has grown to the largest batch (GHT-NET-09).
///
/// Filled by ``NetworkDevice`` (the frames' addresses), routed by
/// ``NetworkSwitch/route(_:from:)`` (one lock hold per burst), delivered per target port (one
/// lock hold of each receiving port per burst), then cleared: it holds its targets strongly
/// only while the batch is being forwarded.
struct TransmitBurst {
    /// Route codes besides an index into ``targets``.
    static let flood = -1
    /// Locked port, foreign source address (GHT-ISO-02).
    static let spoofed = -2
    /// The port is not attached (beyond ``NetworkSwitch/maxPorts``, or its address was taken).
    static let unplugged = -3
    /// Known destination behind the sending port itself, or a port gone: no copy is made.
    static let nowhere = -4

    /// Per frame: its request in the batch and its Ethernet addresses.
    var frames: [(request: Int, destination: EthernetAddress, source: EthernetAddress)] = []
    /// Per frame, once routed: an index into ``targets`` or one of the codes above.
    var routes: [Int] = []
    /// The distinct ports frames of this burst go to (unicast).
    var targets: [NetworkDevice] = []
    /// Every other port, when a frame of this burst is flooded (``hasFloodTargets``).
    var floodTargets: [NetworkDevice] = []
    var hasFloodTargets = false

    init(capacity: Int) {
        frames.reserveCapacity(capacity)
        routes.reserveCapacity(capacity)
        targets.reserveCapacity(8)
        floodTargets.reserveCapacity(8)
    }

    /// Adds a frame, routed later.
    mutating func append(request: Int, destination: EthernetAddress, source: EthernetAddress) {
        frames.append((request, destination, source))
        routes.append(Self.nowhere)
    }

    /// The index of `device` in ``targets``, added if new.
    mutating func target(_ device: NetworkDevice) -> Int {
        for (i, t) in targets.enumerated() where t === device { return i }
        targets.append(device)
        return targets.count - 1
    }

    /// Empties the burst, keeping its capacity, and lets the targets go.
    mutating func removeAll() {
        frames.removeAll(keepingCapacity: true)
        routes.removeAll(keepingCapacity: true)
        targets.removeAll(keepingCapacity: true)
        floodTargets.removeAll(keepingCapacity: true)
        hasFloodTargets = false
    }
}
