/// A Swift Testing test as its source declares it: `@Test("ID, ID: what it checks")`.
public struct TestReference: Hashable, Sendable, Comparable {
    /// The display name, as the test run prints it.
    public var title: String
    /// The source file, relative to the package root.
    public var file: String
    public var line: Int

    public init(title: String, file: String, line: Int) {
        self.title = title
        self.file = file
        self.line = line
    }

    /// The requirement IDs the test names (before the first colon of its display name).
    public var requirementIDs: [String] { RequirementID.named(byTitle: title) }

    public static func < (a: TestReference, b: TestReference) -> Bool {
        (a.file, a.line) < (b.file, b.line)
    }
}

/// The tests of the package's test sources, by the requirements they name.
public struct TestIndex: Sendable {
    public private(set) var tests: [TestReference] = []
    private var byRequirement: [String: [TestReference]] = [:]

    public init() {}

    /// The tests that name `id`, in source order.
    public func tests(naming id: String) -> [TestReference] {
        byRequirement[id] ?? []
    }

    /// Every ID some test names.
    public var namedIDs: Set<String> { Set(byRequirement.keys) }

    /// Adds the `@Test("...")` declarations of one Swift source file.
    public mutating func add(source: String, file: String) {
        for test in Self.declarations(in: source, file: file) {
            tests.append(test)
            for id in Set(test.requirementIDs) {
                byRequirement[id, default: []].append(test)
            }
        }
    }

    /// Finds `@Test(` followed (after whitespace) by a string literal, and reads the literal,
    /// undoing `\"` and `\\`. A test without a display name names no requirement.
    static func declarations(in source: String, file: String) -> [TestReference] {
        var found: [TestReference] = []
        let bytes = Array(source.utf8)
        let marker = Array("@Test(".utf8)
        var line = 1
        var i = 0
        while i < bytes.count {
            if bytes[i] == UInt8(ascii: "\n") { line += 1 }
            guard bytes[i] == marker[0], bytes.count - i >= marker.count, Array(bytes[i..<i + marker.count]) == marker else {
                i += 1
                continue
            }
            let declarationLine = line
            var j = i + marker.count
            while j < bytes.count, bytes[j] == UInt8(ascii: " ") || bytes[j] == UInt8(ascii: "\n") || bytes[j] == UInt8(ascii: "\t") {
                if bytes[j] == UInt8(ascii: "\n") { line += 1 }
                j += 1
            }
            i = j
            guard j < bytes.count, bytes[j] == UInt8(ascii: "\"") else { continue }
            var title: [UInt8] = []
            j += 1
            while j < bytes.count, bytes[j] != UInt8(ascii: "\""), bytes[j] != UInt8(ascii: "\n") {
                if bytes[j] == UInt8(ascii: "\\"), j + 1 < bytes.count {
                    j += 1
                }
                title.append(bytes[j])
                j += 1
            }
            found.append(TestReference(title: String(decoding: title, as: UTF8.self), file: file, line: declarationLine))
            i = j
        }
        return found
    }
}
