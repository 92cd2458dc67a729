import VirtioSystem

/// The modules of a package as its sources are: for each directory under `Sources/`, the
/// modules its files import. Read from disk, compared with ARCHITECTURE.md's module table by
/// ``ArchitectureRules`` (Spec/architecture.md).
public struct ModuleGraph: Sendable {
    /// One `import` line: the module it names and the file it is in (relative to the root).
    public struct Import: Sendable, Hashable {
        public var module: String
        public var file: String
        /// `@_exported import kind Module.Name` names one declaration; nil for a whole module.
        public var declaration: String?
        public var isExported: Bool
    }

    /// Every module directory under `Sources/`, with its imports, sorted by module name.
    public private(set) var imports: [String: [Import]] = [:]

    public var modules: [String] { imports.keys.sorted() }

    /// A graph with no modules, for building one by hand (``add(module:source:file:)``).
    public static var empty: ModuleGraph { ModuleGraph() }

    private init() {}

    /// Adds the imports of `source`, a file of `module`.
    public mutating func add(module: String, source: String, file: String) {
        imports[module, default: []] += Self.imports(in: source, file: file)
    }

    public init(root: String, sourcesDirectory: String = "Sources") throws(SystemError) {
        let base = root + "/" + sourcesDirectory + "/"
        for path in try TextFile.files(under: root + "/" + sourcesDirectory, suffix: ".swift") {
            guard path.hasPrefix(base) else { continue }
            let module = String(path.dropFirst(base.count).prefix { $0 != "/" })
            let relative = String(path.dropFirst(root.count + 1))
            add(module: module, source: try TextFile.read(path), file: relative)
        }
        // A C target (the shim) is a module too, with no Swift imports to check.
        for path in try TextFile.files(under: root + "/" + sourcesDirectory, suffix: ".c") where path.hasPrefix(base) {
            let module = String(path.dropFirst(base.count).prefix { $0 != "/" })
            if imports[module] == nil { imports[module] = [] }
        }
    }

    /// The import declarations of one source file (`import M`, `@testable import M`,
    /// `@_exported import struct M.T`, `import M` inside `#if`); comments are skipped.
    public static func imports(in source: String, file: String) -> [Import] {
        var found: [Import] = []
        for rawLine in source.split(separator: "\n", omittingEmptySubsequences: true) {
            var words = rawLine.split(separator: " ").map(String.init)
            guard !words.isEmpty, !words[0].hasPrefix("//") else { continue }
            var exported = false
            while let first = words.first, first.hasPrefix("@") {
                if first == "@_exported" { exported = true }
                words.removeFirst()
            }
            guard words.first == "import", words.count >= 2 else { continue }
            let kinds: Set<String> = ["struct", "class", "enum", "protocol", "func", "var", "let", "typealias"]
            if kinds.contains(words[1]), words.count >= 3 {
                let path = words[2].split(separator: ".", maxSplits: 1).map(String.init)
                found.append(Import(module: path[0], file: file, declaration: path.count > 1 ? path[1] : nil, isExported: exported))
            } else {
                let module = String(words[1].prefix { $0 != "." })
                found.append(Import(module: module, file: file, declaration: nil, isExported: exported))
            }
        }
        return found
    }
}
