import VirtioSystem

/// ARCHITECTURE.md's module table, and the ways a package's sources break it
/// (Spec/architecture.md, GHT-ARC-01..04).
///
/// The table is the Markdown table whose header starts `| Module | May import |`: one row per
/// module, the module and each allowed import in backticks. A row that allows `Glibc` says
/// why in its last cell, with the word "exception" (only the OS layer makes system calls).
public struct ArchitectureRules: Sendable {
    /// Allowed imports per module, as the table gives them.
    public private(set) var allowed: [String: Set<String>] = [:]
    /// The last cell of each row: what the module holds, and any exception.
    public private(set) var notes: [String: String] = [:]

    /// The module that alone may make system calls (GHT-ARC-03).
    public static let operatingSystemLayer = "VirtioSystem"
    /// Modules of the toolchain any module may import: they make no system calls.
    public static let toolchainModules: Set<String> = ["Synchronization", "Testing"]

    public init(markdown: String) {
        var inTable = false
        for line in markdown.split(separator: "\n", omittingEmptySubsequences: false) {
            let cells = line.split(separator: "|", omittingEmptySubsequences: false).dropFirst().dropLast()
                .map { $0.trimmingSpaces() }
            if cells.count >= 2, cells[0] == "Module", cells[1] == "May import" { inTable = true; continue }
            guard inTable else { continue }
            guard line.hasPrefix("|"), cells.count >= 2 else { inTable = false; continue }
            let names = Self.backticked(cells[0])
            guard let module = names.first else { continue }   // the separator row
            allowed[module] = Set(Self.backticked(cells[1]))
            notes[module] = cells.last ?? ""
        }
    }

    /// Every way `graph` differs from the table, one line each, sorted; empty when it holds.
    public func violations(of graph: ModuleGraph) -> [String] {
        var problems: [String] = []
        for module in graph.modules where allowed[module] == nil {
            problems.append("GHT-ARC-02: module \(module) has no row in the module table")
        }
        for module in allowed.keys.sorted() where graph.imports[module] == nil {
            problems.append("GHT-ARC-02: the module table names \(module), which is not under Sources/")
        }
        for module in graph.modules {
            guard let permitted = allowed[module] else { continue }
            for item in graph.imports[module] ?? [] where item.module != module {
                if !permitted.contains(item.module) && !Self.toolchainModules.contains(item.module) {
                    problems.append("GHT-ARC-01: \(item.file) imports \(item.module), which \(module) may not import")
                }
            }
        }
        for (module, permitted) in allowed where permitted.contains("Glibc") && module != Self.operatingSystemLayer {
            if !(notes[module] ?? "").lowercased().contains("exception") {
                problems.append("GHT-ARC-03: \(module) may import Glibc but its row names no exception")
            }
        }
        return Array(Set(problems)).sorted()
    }

    /// Modules that re-export a whole module (`@_exported import M`) instead of naming each
    /// declaration: the umbrella would grow with every public type underneath (GHT-ARC-04).
    public static func wholeModuleReExports(in graph: ModuleGraph) -> [String] {
        graph.modules.flatMap { module in
            (graph.imports[module] ?? []).filter { $0.isExported && $0.declaration == nil }
                .map { "GHT-ARC-04: \($0.file) re-exports all of \($0.module)" }
        }
    }

    static func backticked(_ cell: String) -> [String] {
        cell.split(separator: "`", omittingEmptySubsequences: false).enumerated()
            .compactMap { $0.offset % 2 == 1 ? String($0.element) : nil }
    }
}

extension Substring {
    func trimmingSpaces() -> String {
        String(drop { $0 == " " }.reversed().drop { $0 == " " }.reversed())
    }
}
