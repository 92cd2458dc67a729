/// Every requirement `Spec/` states, read from its Markdown tables (Spec/README.md says which
/// tables count):
///
/// - `| ID | Level | Rule |`: our own rules; the party comes from the `| Area | Party |` table
///   by the ID's area (`GHT-VAL-03` → `GHT-VAL`);
/// - `| ID | § | Party | Level | Rule |`: the VIRTIO rules (`virtio-rules.md`);
/// - `| ID | Why |`: requirements not claimed, with the reason (`not-applicable.md`).
///
/// Other tables (message layouts, field lists) are prose and are not read.
public struct RequirementCatalog: Sendable {
    /// The requirements in document order.
    public private(set) var requirements: [Requirement] = []
    public private(set) var exemptions: [Exemption] = []
    /// Party by area prefix (`GHT-VAL` → `Back-end`).
    public private(set) var parties: [String: String] = [:]
    /// What is wrong with the documents themselves: duplicate IDs, malformed rows, an area
    /// without a party.
    public private(set) var problems: [String] = []

    private var index: [String: Int] = [:]

    public init() {}

    /// The requirement with `id`, if one is stated.
    public subscript(id: String) -> Requirement? {
        index[id].map { requirements[$0] }
    }

    /// The exemption of `id`, if it has one.
    public func exemption(for id: String) -> Exemption? {
        exemptions.first { $0.id == id }
    }

    /// Adds the tables of one Markdown document, named `document` (its file name).
    public mutating func add(markdown: String, document: String) {
        var heading = ""
        var kind: TableKind?
        for rawLine in markdown.split(separator: "\n", omittingEmptySubsequences: false) {
            let line = rawLine.trimmingWhitespace()
            if line.hasPrefix("#") {
                heading = String(line.drop { $0 == "#" }.trimmingWhitespace())
                kind = nil
                continue
            }
            guard line.hasPrefix("|") else {
                kind = nil
                continue
            }
            let cells = Self.cells(of: line)
            if let header = TableKind(header: cells) {
                kind = header
                continue
            }
            guard let kind, !cells.allSatisfy({ $0.allSatisfy { $0 == "-" || $0 == ":" } }) else { continue }
            addRow(cells, kind: kind, heading: heading, document: document)
        }
    }

    /// Checks what can only be checked once every document is in: each of our rules has a
    /// party, and each exemption names a stated requirement.
    public mutating func finish() {
        for (i, requirement) in requirements.enumerated() where requirement.party.isEmpty {
            if let party = parties[Self.area(of: requirement.id)] {
                requirements[i].party = party
            } else {
                problems.append("\(requirement.id): its area \(Self.area(of: requirement.id)) has no party in the Area/Party table")
            }
        }
        for exemption in exemptions where index[exemption.id] == nil {
            problems.append("\(exemption.id): exempted but stated nowhere")
        }
    }

    /// `GHT-VAL-03` → `GHT-VAL`.
    public static func area(of id: String) -> String {
        guard let dash = id.lastIndex(of: "-") else { return id }
        return String(id[..<dash])
    }

    private mutating func addRow(_ cells: [String], kind: TableKind, heading: String, document: String) {
        guard let id = cells.first, RequirementID.isValid(id) || kind == .parties else {
            problems.append("\(document): a row of a requirements table without a valid ID: \(cells.joined(separator: " | "))")
            return
        }
        switch kind {
        case .parties:
            guard cells.count >= 2 else { return }
            parties[cells[0]] = cells[1]
        case .exemptions:
            guard cells.count >= 2, !cells[1].isEmpty else {
                problems.append("\(id): an exemption without a reason")
                return
            }
            exemptions.append(Exemption(id: id, reason: cells[1]))
        case .ours:
            guard cells.count >= 3 else { return malformed(id, document) }
            insert(Requirement(id: id, level: cells[1], party: "", section: heading, text: cells[2], document: document, chapter: heading))
        case .virtio:
            guard cells.count >= 5 else { return malformed(id, document) }
            insert(Requirement(id: id, level: cells[3], party: cells[2], section: "§" + cells[1], text: cells[4], document: document, chapter: heading))
        }
    }

    private mutating func malformed(_ id: String, _ document: String) {
        problems.append("\(id): malformed row in \(document)")
    }

    private mutating func insert(_ requirement: Requirement) {
        if let existing = index[requirement.id] {
            problems.append("\(requirement.id): stated twice (\(requirements[existing].document) and \(requirement.document))")
            return
        }
        index[requirement.id] = requirements.count
        requirements.append(requirement)
    }

    static func cells(of line: Substring) -> [String] {
        var body = line.dropFirst()
        if body.hasSuffix("|") { body = body.dropLast() }
        return body.split(separator: "|", omittingEmptySubsequences: false).map { String($0.trimmingWhitespace()) }
    }

    private enum TableKind {
        case ours, virtio, exemptions, parties

        init?(header cells: [String]) {
            switch cells {
            case ["ID", "Level", "Rule"]: self = .ours
            case ["ID", "§", "Party", "Level", "Rule"]: self = .virtio
            case ["ID", "Why"]: self = .exemptions
            case ["Area", "Party"]: self = .parties
            default: return nil
            }
        }
    }
}

/// The shape of a requirement ID: `[A-Z]+(-[A-Z]+)*-[0-9]{2}` (Spec/README.md).
public enum RequirementID {
    public static func isValid<S: StringProtocol>(_ text: S) -> Bool {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count >= 2, let number = parts.last, number.count == 2,
              number.allSatisfy({ $0.isASCII && $0.isNumber }) else { return false }
        return parts.dropLast().allSatisfy { part in !part.isEmpty && part.allSatisfy { $0.isASCII && $0.isUppercase } }
    }

    /// The IDs a test's display name names: the comma- or space-separated words before its first
    /// colon that have the shape of an ID.
    public static func named(byTitle title: String) -> [String] {
        guard let colon = title.firstIndex(of: ":") else { return [] }
        return title[..<colon]
            .split(whereSeparator: { $0 == "," || $0 == " " || $0 == "/" })
            .filter { isValid($0) }
            .map(String.init)
    }
}

extension StringProtocol {
    func trimmingWhitespace() -> Substring {
        let text = self[...]
        let start = text.firstIndex { !$0.isWhitespace } ?? text.endIndex
        let end = text.lastIndex { !$0.isWhitespace }.map { text.index(after: $0) } ?? start
        return Substring(text[start..<Swift.max(start, end)])
    }
}
