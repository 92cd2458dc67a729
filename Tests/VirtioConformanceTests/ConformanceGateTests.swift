import Testing
import VirtioConformance

/// The package's own root: this file is `Tests/VirtioConformanceTests/<name>.swift`.
let packageRoot: String = {
    var parts = #filePath.split(separator: "/", omittingEmptySubsequences: false)
    parts.removeLast(3)
    return parts.joined(separator: "/")
}()

/// The gate: `swift test` fails while `Spec/` states a MUST that no test names and no
/// exemption explains, a SHOULD that is neither tested nor explained, or while a test names an
/// ID that `Spec/` does not state.
@Suite("The package's conformance matrix")
struct ConformanceGateTests {
    let sources: ConformanceSources

    init() throws {
        sources = try ConformanceSources(root: packageRoot)
    }

    @Test("GHT-CNF-01, GHT-CNF-02, GHT-CNF-03: every MUST of Spec/ is tested or exempted, every SHOULD tested or explained, every named ID stated")
    func noUntestedMust() {
        let matrix = sources.matrix()
        for problem in matrix.problems {
            Issue.record("\(problem)")
        }
        #expect(matrix.count(strength: .must) > 0)
    }

    @Test("GHT-CNF-04: the VIRTIO rules table and our rules are all read, each with a party and a level")
    func catalogIsWhole() {
        let requirements = sources.catalog.requirements
        let virtio = requirements.filter { $0.document == "virtio-rules.md" }
        let ours = requirements.filter { $0.id.hasPrefix("GHT-") }
        // The requirements list's chapters 1-9 and every one of our documents.
        #expect(virtio.count >= 150)
        for document in ["transport.md", "vhost-user.md", "os-layer.md", "devices.md", "scheduler.md", "conformance.md"] {
            #expect(ours.contains { $0.document == document }, "no rule read from \(document)")
        }
        for requirement in requirements {
            #expect(!requirement.party.isEmpty, "\(requirement.id) has no party")
            #expect(!requirement.level.isEmpty, "\(requirement.id) has no level")
        }
        #expect(sources.catalog["SPL-DEV-01"]?.section == "§2.7.5.1")
        #expect(sources.catalog["GHT-VAL-03"]?.strength == .must)
    }

    @Test("GHT-CNF-05: every exemption gives a reason and names a requirement no test claims")
    func exemptionsAreJustified() {
        for exemption in sources.catalog.exemptions {
            #expect(exemption.reason.count >= 20, "\(exemption.id): the reason is too short to justify anything")
            #expect(sources.tests.tests(naming: exemption.id).isEmpty,
                    "\(exemption.id) is exempted and tested: drop the exemption or the test")
        }
    }
}
