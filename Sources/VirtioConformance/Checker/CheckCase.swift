import VirtioCore

/// The device type a case is written for.
public enum CheckDevice: String, Sendable, CaseIterable {
    case blk, net
    /// Decided from the offered features: net when MRG_RXBUF (15), STATUS (16) or CTRL_VQ (17)
    /// is offered, blk otherwise (vhost-user itself does not name the device type).
    case auto
}

/// One check: a name (what `--case` filters on), the requirement IDs of Spec/ it checks, the
/// rule's text (quoted in the evidence of a failure), the device it is for (nil: any), and its
/// body, which runs against a fresh connection (GHT-CHK-01, GHT-CHK-04).
public struct CheckCase: Sendable {
    public let name: String
    public let requirements: [String]
    public let rule: String
    public let device: CheckDevice?
    let body: @Sendable (CheckContext) throws(CheckError) -> Void

    init(_ name: String, _ requirements: [String], device: CheckDevice? = nil, rule: String,
         body: @escaping @Sendable (CheckContext) throws(CheckError) -> Void) {
        self.name = name
        self.requirements = requirements
        self.rule = rule
        self.device = device
        self.body = body
    }

    /// Every case the checker knows, protocol first, hostile input last.
    public static var all: [CheckCase] { protocolCases + ringCases + blockCases + netCases + hostileCases }
}

/// What a case's body gets: connections to the back-end under test, each closed when the case
/// ends whatever happened.
final class CheckContext {
    let socketPath: String
    let timeoutMilliseconds: Int32
    private var connections: [CheckConnection] = []

    init(socketPath: String, timeoutMilliseconds: Int32) {
        self.socketPath = socketPath
        self.timeoutMilliseconds = timeoutMilliseconds
    }

    /// A new connection with memory of its own (unsealed: a file the checker may truncate).
    func connect(sealed: Bool = true) throws(CheckError) -> CheckConnection {
        let c = try CheckConnection(socketPath: socketPath, timeoutMilliseconds: timeoutMilliseconds, sealed: sealed)
        connections.append(c)
        return c
    }

    /// A connection brought up to a running queue 0.
    func running(accept: VirtioFeatures = CheckConnection.wanted) throws(CheckError) -> CheckConnection {
        let c = try connect()
        try c.bringUp(accept: accept)
        return c
    }

    /// Whether a connection of the case was closed by the back-end.
    var sawClose: Bool { connections.contains { $0.closedByPeer } }

    var evidence: String { connections.map(\.evidence).joined(separator: "\n--- next connection\n") }

    func closeAll() {
        for c in connections { c.close() }
        connections.removeAll()
    }
}
