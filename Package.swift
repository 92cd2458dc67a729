// swift-tools-version:6.0
//
// VirtioGrant: a virtio transport whose virtqueues carry grant handles instead of
// guest-physical addresses. No package dependencies, by design.

import PackageDescription

let package = Package(
    name: "VirtioGrant",
    products: [
        .library(name: "VirtioCore", targets: ["VirtioCore"]),
        .library(name: "VirtioGrants", targets: ["VirtioGrants"]),
        .executable(name: "virtio-grant", targets: ["virtio-grant"]),
    ],
    targets: [
        // The wire: feature bits, status, descriptor and ring layouts, event-index math, the
        // memory-access protocol and both sides of the split ring. No OS calls.
        .target(name: "VirtioCore"),
        // Grant tables (granting and mapping sides) and the IOMMU-style mapper: translators for
        // grant handles and IOVAs behind the ring's generic parameter, with an IOTLB.
        .target(name: "VirtioGrants", dependencies: ["VirtioCore"]),
        .executableTarget(name: "virtio-grant", dependencies: ["VirtioCore", "VirtioGrants"]),
        .testTarget(name: "VirtioCoreTests", dependencies: ["VirtioCore"]),
        .testTarget(name: "VirtioGrantsTests", dependencies: ["VirtioGrants", "VirtioCore"]),
    ],
    swiftLanguageModes: [.v6]
)
