/// One run of ``BackEndFuzzer``: a seed shape taken from the check cases (a well-formed
/// request the back-end should serve) and the mutations applied to it, in order. Its text
/// form is the reproducer file `virtio-grant check --replay FILE` runs again (GHT-CHK-19).
public struct FuzzCase: Sendable, Hashable {
    /// The well-formed requests the mutations start from, as the check cases write them.
    public enum Seed: String, Sendable, CaseIterable {
        /// blk GET_ID (blk-get-id), a read of sector 0 (blk-write-read), a write of sector 1,
        /// a read whose header is cut at 4 and 5 (blk-header-split), GET_ID through an indirect
        /// table (ring-indirect).
        case getID = "get-id", read, write, headerSplit = "header-split", indirect
        /// GET_ID behind an INDIRECT descriptor inside the indirect table (hostile-nested-indirect).
        case nestedIndirect = "nested-indirect"
        /// net: a 12-byte header and a 60-byte frame on the transmit queue (net-tx-frame).
        case netTransmit = "net-tx"

        public var device: CheckDevice { self == .netTransmit ? .net : .blk }
        public static func seeds(for device: CheckDevice) -> [Seed] { allCases.filter { $0.device == device } }
    }

    /// A table of the checker's ring: the descriptor table or the indirect table.
    public enum Table: String, Sendable, Hashable { case main, indirect }
    /// A field of a split-ring descriptor (VIRTIO 1.2 §2.7.5).
    public enum Field: String, Sendable, Hashable, CaseIterable { case addr, len, flags, next }

    /// One structured change to the seed request, its memory or its messages.
    public enum Mutation: Sendable, Hashable {
        /// Overwrites one field of descriptor `index` of `table` after the chain is written.
        case descriptor(Table, index: Int, Field, UInt64)
        /// Publishes the available index this far past the one that covers the request.
        case availIndex(delta: UInt16)
        /// Writes this value as the request's head in the available ring.
        case availHead(UInt16)
        /// Sends a raw message (request number, payload, this many copies of the kick
        /// eventfd) once the queue runs.
        case message(request: UInt32, payload: [UInt8], fds: Int)
        /// Shrinks the memfd to this many bytes before the request is made available.
        case truncate(Int)
        /// Replaces the memory table by one region this many times the file's size.
        case regionScale(Int)

        /// The line of the reproducer file.
        public var line: String {
            switch self {
            case .descriptor(let t, let i, let f, let v): "desc \(t.rawValue) \(i) \(f.rawValue) 0x\(String(v, radix: 16))"
            case .availIndex(let d): "avail-index \(d)"
            case .availHead(let h): "avail-head \(h)"
            case .message(let r, let p, let fds): "message \(r) \(fds) \(p.isEmpty ? "-" : CheckConnection.hex(p))"
            case .truncate(let n): "truncate \(n)"
            case .regionScale(let k): "region-scale \(k)"
            }
        }

        /// Parses a line written by ``line``.
        public init?(line: String) {
            let w = line.split(separator: " ").map(String.init)
            func number(_ s: String) -> UInt64? { s.hasPrefix("0x") ? UInt64(s.dropFirst(2), radix: 16) : UInt64(s) }
            switch (w.first, w.count) {
            case ("desc", 5):
                guard let t = Table(rawValue: w[1]), let i = Int(w[2]), (0..<256).contains(i), let f = Field(rawValue: w[3]),
                      let v = number(w[4]) else { return nil }
                self = .descriptor(t, index: i, f, v)
            case ("avail-index", 2): guard let d = UInt16(w[1]) else { return nil }; self = .availIndex(delta: d)
            case ("avail-head", 2): guard let h = UInt16(w[1]) else { return nil }; self = .availHead(h)
            case ("message", 4):
                guard let r = UInt32(w[1]), let fds = Int(w[2]), (0...8).contains(fds), let p = Self.bytes(hex: w[3]) else { return nil }
                self = .message(request: r, payload: p, fds: fds)
            case ("truncate", 2): guard let n = Int(w[1]), n >= 0 else { return nil }; self = .truncate(n)
            case ("region-scale", 2): guard let k = Int(w[1]), (1...64).contains(k) else { return nil }; self = .regionScale(k)
            default: return nil
            }
        }

        static func bytes(hex: String) -> [UInt8]? {
            guard hex != "-" else { return [] }
            let digits = Array(hex.utf8)
            guard digits.count % 2 == 0, digits.count <= 512 else { return nil }
            var out: [UInt8] = []
            for i in stride(from: 0, to: digits.count, by: 2) {
                guard let b = UInt8(String(decoding: digits[i..<i + 2], as: UTF8.self), radix: 16) else { return nil }
                out.append(b)
            }
            return out
        }
    }

    public var seed: Seed
    public var mutations: [Mutation]

    public init(seed: Seed, mutations: [Mutation] = []) {
        self.seed = seed
        self.mutations = mutations
    }

    /// Whether the memfd must be unsealed (the case shrinks it).
    var needsUnsealedMemory: Bool { mutations.contains { if case .truncate = $0 { true } else { false } } }
}

/// A finding of the fuzzer: the minimized case, its outcome and evidence, and the back-end
/// command it was found against.
public struct FuzzFinding: Sendable {
    public var fuzzCase: FuzzCase
    public var result: CheckResult
    /// The mutations of the run that found it, before minimization.
    public var originalMutations: [FuzzCase.Mutation]
    public var backendCommand: String?

    public init(fuzzCase: FuzzCase, result: CheckResult, originalMutations: [FuzzCase.Mutation], backendCommand: String? = nil) {
        self.fuzzCase = fuzzCase
        self.result = result
        self.originalMutations = originalMutations
        self.backendCommand = backendCommand
    }

    /// The reproducer file: `key value` lines, `#` comments; `check --replay` reads it.
    public var reproducer: String {
        var lines = ["# virtio-grant fuzz reproducer: virtio-grant check --replay THIS_FILE [--backend-cmd 'CMD {sock}']",
                     "seed \(fuzzCase.seed.rawValue)", "outcome \(result.outcome.rawValue)"]
        if let backendCommand { lines.append("backend-cmd \(backendCommand)") }
        lines += fuzzCase.mutations.map { "mutation " + $0.line }
        lines += result.evidence.split(separator: "\n", omittingEmptySubsequences: false).prefix(60).map { "# " + $0 }
        return lines.joined(separator: "\n") + "\n"
    }
}

/// A reproducer file read back: the case, the outcome it was saved with, the command.
public struct FuzzReproducer: Sendable {
    public var fuzzCase: FuzzCase
    public var expected: CheckOutcome?
    public var backendCommand: String?

    /// Parses the text of a reproducer file; nil with the first bad line's number.
    public static func parse(_ text: String) -> Result<FuzzReproducer, FuzzReproducerError> {
        var seed: FuzzCase.Seed?, mutations: [FuzzCase.Mutation] = [], expected: CheckOutcome?, command: String?
        for (n, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.drop { $0 == " " }
            guard !line.isEmpty, !line.hasPrefix("#") else { continue }
            let key = line.prefix { $0 != " " }, value = String(line.dropFirst(key.count + 1))
            switch key {
            case "seed": seed = FuzzCase.Seed(rawValue: value)
            case "outcome": expected = CheckOutcome(rawValue: value)
            case "backend-cmd": command = value
            case "mutation":
                guard let m = FuzzCase.Mutation(line: value) else { return .failure(.init(line: n + 1)) }
                mutations.append(m)
            default: return .failure(.init(line: n + 1))
            }
        }
        guard let seed else { return .failure(.init(line: 0)) }
        return .success(FuzzReproducer(fuzzCase: FuzzCase(seed: seed, mutations: mutations), expected: expected, backendCommand: command))
    }
}

public struct FuzzReproducerError: Error, Sendable, CustomStringConvertible {
    /// The 1-based line that did not parse; 0 when the `seed` line is missing.
    public var line: Int
    public var description: String { line == 0 ? "no 'seed' line" : "line \(line) is not a reproducer line" }
}
