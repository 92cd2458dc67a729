// swift-tools-version:6.0
//
// VirtioGrant: a virtio transport whose virtqueues carry grant handles instead of
// guest-physical addresses. No package dependencies, by design.

import PackageDescription

let package = Package(
    name: "VirtioGrant",
    products: [
        .library(name: "VirtioCore", targets: ["VirtioCore"]),
        .executable(name: "virtio-grant", targets: ["virtio-grant"]),
    ],
    targets: [
        // The wire: feature bits, status, descriptor and ring layouts, event-index math, the
        // memory-access protocol and both sides of the split ring. No OS calls.
        .target(name: "VirtioCore"),
        .executableTarget(name: "virtio-grant", dependencies: ["VirtioCore"]),
        .testTarget(name: "VirtioCoreTests", dependencies: ["VirtioCore"]),
    ],
    swiftLanguageModes: [.v6]
)
