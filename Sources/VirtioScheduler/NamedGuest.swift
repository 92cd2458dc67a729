/// A guest the operator names, with a socket of its own (`serve --vfs N --guest
/// NAME=SOCKET[,window=FIRST:COUNT][,weight=W]`). Whoever connects to that socket is that
/// guest: its window of sectors and its weight follow the name, not the order of connections,
/// and a guest that reconnects gets them back (the socket's file permissions are what keeps
/// others off it). GHT-ISO-04.
public struct NamedGuest: Sendable, Equatable {
    /// 1 to 32 letters, digits, `.`, `_` or `-`.
    public let name: String
    /// The unix socket it connects on (1 to 107 bytes).
    public let socket: String
    /// virtio-blk: the sectors the guest owns (`window=FIRST:COUNT`).
    public internal(set) var window: Range<UInt64>?
    /// The scheduler's weight (`weight=W`, 1...1000, default 1).
    public let weight: Int

    /// A guest named `name` on `socket`, its values checked as ``init(parsing:)`` checks them.
    public init(name: String, socket: String, window: Range<UInt64>? = nil, weight: Int = 1) throws(SharedDeviceError) {
        let text = "\(name)=\(socket)"
        if let why = Self.problem(name: name, socket: socket) { throw .malformedGuest(text, reason: why) }
        if let window, window.isEmpty || window.lowerBound > 1 << 40 || window.count > 1 << 40 {
            throw .malformedGuest(text, reason: Self.windowRule)
        }
        guard (1...1000).contains(weight) else { throw .malformedGuest(text, reason: Self.weightRule) }
        self.name = name
        self.socket = socket
        self.window = window
        self.weight = weight
    }

    /// Parses one `--guest` value: `NAME=SOCKET[,window=FIRST:COUNT][,weight=W]`.
    public init(parsing text: String) throws(SharedDeviceError) {
        func bad(_ why: String) -> SharedDeviceError { .malformedGuest(text, reason: why) }
        let parts = text.split(separator: ",", omittingEmptySubsequences: false)
        let head = parts[0].split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
        guard head.count == 2 else { throw bad("expected NAME=SOCKET[,window=FIRST:COUNT][,weight=W]") }
        name = String(head[0])
        socket = String(head[1])
        if let why = Self.problem(name: name, socket: socket) { throw bad(why) }
        var window: Range<UInt64>?, weight: Int?
        for part in parts.dropFirst() {
            let pair = part.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard pair.count == 2 else { throw bad("'\(part)' is not KEY=VALUE") }
            switch pair[0] {
            case "window":
                guard window == nil else { throw bad("window given twice") }
                let bounds = pair[1].split(separator: ":", omittingEmptySubsequences: false)
                guard bounds.count == 2, let first = UInt64(bounds[0]), let count = UInt64(bounds[1]), count >= 1,
                      first <= 1 << 40, count <= 1 << 40 else {
                    throw bad(Self.windowRule)
                }
                window = first..<(first + count)
            case "weight":
                guard weight == nil else { throw bad("weight given twice") }
                guard let w = Int(pair[1]), (1...1000).contains(w) else { throw bad(Self.weightRule) }
                weight = w
            default:
                throw bad("unknown key '\(pair[0])' (window, weight)")
            }
        }
        self.window = window
        self.weight = weight ?? 1
    }

    private static let windowRule = "window is FIRST:COUNT sectors, COUNT at least 1, each at most 2^40"
    private static let weightRule = "weight is an integer in 1...1000"

    private static func problem(name: String, socket: String) -> String? {
        let nameCharacters = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
        guard (1...32).contains(name.count), name.allSatisfy(nameCharacters.contains) else {
            return "a name is 1 to 32 letters, digits, '.', '_' or '-'"
        }
        guard !socket.isEmpty, socket.utf8.count < 108 else { return "the socket path must be 1 to 107 bytes" }
        return nil
    }

    /// Checks guests together: distinct names and sockets; for virtio-blk a window for each
    /// (from `windowSectors` by listing order where none is given) and no two windows
    /// overlapping; no window for another device. Returns them with their windows.
    public static func validated(_ guests: [NamedGuest], model: SharedDeviceModel, windowSectors: UInt64?) throws(SharedDeviceError) -> [NamedGuest] {
        var guests = guests
        for (i, g) in guests.enumerated() {
            if guests[..<i].contains(where: { $0.name == g.name }) { throw .duplicateName(g.name) }
            if guests[..<i].contains(where: { $0.socket == g.socket }) { throw .duplicateSocket(g.socket) }
        }
        guard model == .block else {
            if let g = guests.first(where: { $0.window != nil }) { throw .windowNotForDevice(guest: g.name) }
            return guests
        }
        for i in guests.indices where guests[i].window == nil {
            guard let w = windowSectors else { throw .missingWindow(guest: guests[i].name) }
            guests[i].window = UInt64(i) * w..<UInt64(i + 1) * w
        }
        for (i, g) in guests.enumerated() {
            if let other = guests[..<i].first(where: { $0.window!.overlaps(g.window!) }) {
                throw .overlappingWindows(guest: g.name, other: other.name)
            }
        }
        return guests
    }
}

/// Why a shared device cannot be set up as configured. The descriptions name the `serve`
/// options that configure the same thing.
public enum SharedDeviceError: Error, Equatable, CustomStringConvertible {
    /// One guest's text (``NamedGuest/init(parsing:)``) or values are malformed.
    case malformedGuest(String, reason: String)
    case duplicateName(String)
    case duplicateSocket(String)
    /// A window was given for a device other than virtio-blk.
    case windowNotForDevice(guest: String)
    /// A virtio-blk guest has no window, and no `windowSectors` gives it one.
    case missingWindow(guest: String)
    case overlappingWindows(guest: String, other: String)
    /// virtio-blk guests by connection order need `windowSectors`.
    case noWindowSectors
    /// Both named guests and weights by connection order: a named guest carries its own weight.
    case weightsWithNamedGuests
    /// The scheduler refused the configuration.
    case scheduler(SchedulerError)

    public var description: String {
        switch self {
        case .malformedGuest(let text, let reason): "--guest '\(text)': \(reason)"
        case .duplicateName(let name): "--guest name '\(name)' given twice"
        case .duplicateSocket(let socket): "--guest socket '\(socket)' given twice"
        case .windowNotForDevice(let guest): "--guest \(guest): window is for --device blk"
        case .missingWindow(let guest): "--guest \(guest): --device blk needs window=FIRST:COUNT (or --window-sectors N)"
        case .overlappingWindows(let guest, let other): "--guest \(guest): its window overlaps \(other)'s"
        case .noWindowSectors: "--vfs with --device blk needs --window-sectors N"
        case .weightsWithNamedGuests: "with --guest, give each guest its weight as --guest NAME=SOCKET,weight=W"
        case .scheduler(let error): "\(error)"
        }
    }
}
