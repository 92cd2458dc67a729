import VirtioSystem

/// Reads a package's `Spec/` and test sources from disk into a catalog and a test index.
public struct ConformanceSources: Sendable {
    public var catalog: RequirementCatalog
    public var tests: TestIndex

    /// The file the generator writes; never read as a source of requirements.
    public static let matrixFile = "CONFORMANCE.md"

    /// Reads `specDirectory` (every `.md` but the matrix) and every `.swift` file under
    /// `testsDirectory`; test paths are recorded relative to `root`.
    public init(root: String, specDirectory: String = "Spec", testsDirectory: String = "Tests") throws(SystemError) {
        catalog = RequirementCatalog()
        for path in try TextFile.files(under: root + "/" + specDirectory, suffix: ".md") {
            let name = String(path.split(separator: "/").last ?? "")
            guard name != Self.matrixFile else { continue }
            catalog.add(markdown: try TextFile.read(path), document: name)
        }
        catalog.finish()
        tests = TestIndex()
        for path in try TextFile.files(under: root + "/" + testsDirectory, suffix: ".swift") {
            let relative = path.hasPrefix(root + "/") ? String(path.dropFirst(root.count + 1)) : path
            tests.add(source: try TextFile.read(path), file: relative)
        }
    }

    /// The matrix of these sources, with `run` joined in if given.
    public func matrix(run: TestRunLog? = nil) -> ConformanceMatrix {
        ConformanceMatrix(catalog: catalog, tests: tests, run: run)
    }
}
