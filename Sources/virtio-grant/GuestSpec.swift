/// `serve --vfs N --guest NAME=SOCKET[,window=FIRST:COUNT][,weight=W]`: a guest the operator
/// names, with a socket of its own. Whoever connects to that socket is that guest: its window of
/// sectors and its weight follow the name, not the order of connections, and a guest that
/// reconnects gets them back (the socket's file permissions are what keeps others off it).
struct GuestSpec: Sendable, Equatable {
    let name: String
    let socket: String
    /// virtio-blk: the sectors the guest owns (`window=FIRST:COUNT`).
    var window: Range<UInt64>?
    /// The scheduler's weight (`weight=W`, default 1).
    let weight: Int

    /// Parses one `--guest` value.
    init(_ text: String) throws(UsageError) {
        func bad(_ why: String) -> UsageError { UsageError(description: "--guest '\(text)': \(why)") }
        let parts = text.split(separator: ",", omittingEmptySubsequences: false)
        let head = parts[0].split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
        guard head.count == 2 else { throw bad("expected NAME=SOCKET[,window=FIRST:COUNT][,weight=W]") }
        name = String(head[0])
        socket = String(head[1])
        let nameCharacters = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
        guard (1...32).contains(name.count), name.allSatisfy(nameCharacters.contains) else {
            throw bad("a name is 1 to 32 letters, digits, '.', '_' or '-'")
        }
        guard !socket.isEmpty, socket.utf8.count < 108 else { throw bad("the socket path must be 1 to 107 bytes") }
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
                    throw bad("window is FIRST:COUNT sectors, COUNT at least 1, each at most 2^40")
                }
                window = first..<(first + count)
            case "weight":
                guard weight == nil else { throw bad("weight given twice") }
                guard let w = Int(pair[1]), (1...1000).contains(w) else { throw bad("weight is an integer in 1...1000") }
                weight = w
            default:
                throw bad("unknown key '\(pair[0])' (window, weight)")
            }
        }
        self.window = window
        self.weight = weight ?? 1
    }

    /// Parses every `--guest` and checks them together: distinct names and sockets; for
    /// virtio-blk a window for each (from `windowSectors` by listing order where none is given)
    /// and no two windows overlapping; no window for another device.
    static func parse(_ texts: [String], device: String, windowSectors: UInt64?) throws(UsageError) -> [GuestSpec] {
        var guests: [GuestSpec] = []
        for text in texts { guests.append(try GuestSpec(text)) }
        for (i, g) in guests.enumerated() {
            if guests[..<i].contains(where: { $0.name == g.name }) { throw UsageError(description: "--guest name '\(g.name)' given twice") }
            if guests[..<i].contains(where: { $0.socket == g.socket }) { throw UsageError(description: "--guest socket '\(g.socket)' given twice") }
        }
        guard device == "blk" else {
            if let g = guests.first(where: { $0.window != nil }) { throw UsageError(description: "--guest \(g.name): window is for --device blk") }
            return guests
        }
        for i in guests.indices where guests[i].window == nil {
            guard let w = windowSectors else {
                throw UsageError(description: "--guest \(guests[i].name): --device blk needs window=FIRST:COUNT (or --window-sectors N)")
            }
            guests[i].window = UInt64(i) * w..<UInt64(i + 1) * w
        }
        for (i, g) in guests.enumerated() {
            if let other = guests[..<i].first(where: { $0.window!.overlaps(g.window!) }) {
                throw UsageError(description: "--guest \(g.name): its window overlaps \(other.name)'s")
            }
        }
        return guests
    }
}
