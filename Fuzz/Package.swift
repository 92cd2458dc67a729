// swift-tools-version:6.0
//
// libFuzzer binaries for VirtioGrant's fuzz targets. The target bodies live in the root
// package's VirtioFuzzTargets module (so that `swift test` replays the corpora through them);
// each binary here only hands libFuzzer's input to one of them. Build and run with run.sh.

import PackageDescription

/// One libFuzzer binary per target of VirtioFuzzTargets (the corpus folder name in run.sh).
let targets = ["FuzzSplitDevice", "FuzzSplitDriver", "FuzzPackedDevice", "FuzzPackedDriver", "FuzzGrants", "FuzzChainIO", "FuzzVhostUser", "FuzzBlockDevice", "FuzzSession", "FuzzInflightRecovery"]

let package = Package(
    name: "VirtioGrantFuzz",
    dependencies: [.package(name: "VirtioGrant", path: "..")],
    targets: targets.map { name in
        .executableTarget(name: name, dependencies: [.product(name: "VirtioFuzzTargets", package: "VirtioGrant")])
    } + [
        // Writes the seed corpora (Fuzz/Corpus) from FuzzTargets.seeds.
        .executableTarget(name: "fuzz-seeds", dependencies: [.product(name: "VirtioFuzzTargets", package: "VirtioGrant")]),
    ],
    swiftLanguageModes: [.v6]
)
