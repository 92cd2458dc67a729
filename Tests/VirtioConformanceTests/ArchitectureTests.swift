import Testing
import VirtioConformance
import VirtioSystem

/// The package's structure against ARCHITECTURE.md's module table (Spec/architecture.md).
@Suite("Architecture: modules, imports and the OS layer")
struct ArchitectureTests {
    let graph: ModuleGraph
    let rules: ArchitectureRules

    init() throws {
        graph = try ModuleGraph(root: packageRoot)
        rules = ArchitectureRules(markdown: try TextFile.read(packageRoot + "/ARCHITECTURE.md"))
    }

    @Test("GHT-ARC-01, GHT-ARC-02, GHT-ARC-03: every module imports only what its row of the module table allows, and the table names exactly the modules under Sources/")
    func importsFollowTheTable() {
        #expect(!rules.allowed.isEmpty, "ARCHITECTURE.md has no module table")
        #expect(graph.modules.count >= 8)
        let problems = rules.violations(of: graph)
        #expect(problems.isEmpty, "\(problems.joined(separator: "\n"))")
    }

    @Test("GHT-ARC-01, GHT-ARC-02, GHT-ARC-03: the checker finds an import the table forbids, a module without a row, and Glibc allowed without an exception")
    func checkerFindsViolations() {
        // The real table with three defects planted: the codec importing the OS layer, the
        // endpoints allowed Glibc without an exception, and a module missing from the table.
        var markdown = "| Module | May import | Holds |\n|---|---|---|\n"
        markdown += "| `VhostUser` | `VirtioCore` | the codec |\n"
        markdown += "| `VirtioTransport` | `VhostUser`, `Glibc` | the endpoints |\n"
        markdown += "| `VirtioCore` | `Glibc` | rings; exception: a mutex under the sanitizer |\n"
        let planted = ArchitectureRules(markdown: markdown)
        var graph = ModuleGraph.empty
        graph.add(module: "VhostUser", source: "import VirtioCore\nimport VirtioSystem\n", file: "Sources/VhostUser/A.swift")
        graph.add(module: "VirtioTransport", source: "import VhostUser\n", file: "Sources/VirtioTransport/B.swift")
        graph.add(module: "VirtioCore", source: "#if canImport(Glibc)\nimport Glibc\n#endif\n", file: "Sources/VirtioCore/C.swift")
        graph.add(module: "VirtioDevices", source: "import Synchronization\n", file: "Sources/VirtioDevices/D.swift")
        let problems = planted.violations(of: graph)
        #expect(problems.contains("GHT-ARC-01: Sources/VhostUser/A.swift imports VirtioSystem, which VhostUser may not import"))
        #expect(problems.contains("GHT-ARC-02: module VirtioDevices has no row in the module table"))
        #expect(problems.contains("GHT-ARC-03: VirtioTransport may import Glibc but its row names no exception"))
        #expect(problems.count == 3, "\(problems)")
    }

    @Test("GHT-ARC-04: the device author's import re-exports declarations by name, never a whole module")
    func umbrellaReExportsByName() {
        let exported = (graph.imports["VirtioGrant"] ?? []).filter(\.isExported)
        #expect(exported.count >= 10)
        #expect(exported.allSatisfy { $0.declaration != nil })
        #expect(ArchitectureRules.wholeModuleReExports(in: graph).isEmpty)
        // A whole-module re-export is what the rule forbids: the checker sees one.
        var planted = ModuleGraph.empty
        planted.add(module: "VirtioGrant", source: "@_exported import VirtioTransport\n", file: "Sources/VirtioGrant/X.swift")
        #expect(ArchitectureRules.wholeModuleReExports(in: planted) == ["GHT-ARC-04: Sources/VirtioGrant/X.swift re-exports all of VirtioTransport"])
    }
}
