/// One normative statement of `Spec/`: a VIRTIO rule of the project's requirements list
/// (`Spec/virtio-rules.md`) or a rule of our own transport (`GHT-...`).
public struct Requirement: Hashable, Sendable {
    /// The ID, for example `SPL-DEV-01` or `GHT-VAL-03`.
    public var id: String
    /// The level as written: `MUST`, `MUST NOT`, `SHOULD / MUST`, `DEF`, ...
    public var level: String
    /// Who the rule binds: `Drv`/`Dev`/`Both` for VIRTIO rules, our party names for ours
    /// (`Spec/README.md`, "Parties").
    public var party: String
    /// Where the rule comes from: the VIRTIO 1.2 section, or our document and its section.
    public var section: String
    /// The rule's text, as `Spec/` words it.
    public var text: String
    /// The `Spec/` file that states it.
    public var document: String
    /// The heading of the document part it sits under (a chapter of the VIRTIO rules, a
    /// section of ours).
    public var chapter: String

    public init(id: String, level: String, party: String, section: String, text: String, document: String, chapter: String) {
        self.id = id
        self.level = level
        self.party = party
        self.section = section
        self.text = text
        self.document = document
        self.chapter = chapter
    }

    /// The strongest RFC 2119 keyword of the level: a rule written `SHOULD / MUST` (the spec's
    /// "should, and where X, must") binds as a MUST.
    public var strength: Strength { Strength(level: level) }
}

/// How strongly a requirement binds, from the keywords of its level (RFC 2119).
public enum Strength: Int, Comparable, Hashable, Sendable, CustomStringConvertible {
    /// A layout or formula both sides must match, without a keyword (`DEF`).
    case definition
    case may
    case should
    case must

    /// The strongest keyword in `level`.
    public init(level: String) {
        let words = level.uppercased()
        if words.contains("MUST") {
            self = .must
        } else if words.contains("SHOULD") {
            self = .should
        } else if words.contains("MAY") {
            self = .may
        } else {
            self = .definition
        }
    }

    public static func < (a: Strength, b: Strength) -> Bool { a.rawValue < b.rawValue }

    public var description: String {
        switch self {
        case .definition: "DEF"
        case .may: "MAY"
        case .should: "SHOULD"
        case .must: "MUST"
        }
    }
}

/// A requirement the implementation does not claim, and why: a feature it does not offer, or
/// a mechanism the transport does not have. The matrix lists these, and a MUST with such an
/// entry is not an untested MUST. For a SHOULD the entry explains why it has no test.
public struct Exemption: Hashable, Sendable {
    public var id: String
    public var reason: String

    public init(id: String, reason: String) {
        self.id = id
        self.reason = reason
    }
}
