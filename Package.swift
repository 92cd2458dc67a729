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
        .library(name: "VirtioTransport", targets: ["VirtioTransport"]),
        .library(name: "VirtioDevices", targets: ["VirtioDevices"]),
        .library(name: "VirtioScheduler", targets: ["VirtioScheduler"]),
        .library(name: "VirtioFuzzTargets", targets: ["VirtioFuzzTargets"]),
        .library(name: "VirtioConformance", targets: ["VirtioConformance"]),
        .library(name: "VirtioWorkloads", targets: ["VirtioWorkloads"]),
        .library(name: "VirtioBenchmarks", targets: ["VirtioBenchmarks"]),
        .executable(name: "virtio-grant", targets: ["virtio-grant"]),
    ],
    targets: [
        // The wire: feature bits, status, descriptor and ring layouts, event-index math, the
        // memory-access protocol and both sides of the split ring. No OS calls.
        .target(name: "VirtioCore"),
        // Grant tables (granting and mapping sides) and the IOMMU-style mapper: translators for
        // grant handles and IOVAs behind the ring's generic parameter, with an IOTLB.
        .target(name: "VirtioGrants", dependencies: ["VirtioCore"]),
        // Only what Glibc does not import: GNU-only calls, variadic syscall(), CMSG macros.
        .target(name: "CVirtioShim"),
        // Shared memory, eventfd doorbells, the vhost-user control plane, FrontEnd and BackEnd.
        .target(name: "VirtioTransport", dependencies: ["VirtioCore", "VirtioGrants", "CVirtioShim"]),
        // Sample devices built only on the public API, used by the demo and the benchmarks.
        .target(name: "VirtioDevices", dependencies: ["VirtioCore", "VirtioTransport"]),
        // m guests on n virtual functions of one device: the mapping table, obtain/release,
        // device models (reusable state, DMA legitimacy), policies, the resource accountant.
        .target(name: "VirtioScheduler", dependencies: ["VirtioCore", "VirtioGrants", "VirtioTransport", "VirtioDevices"]),
        // The bodies of the fuzz targets: Fuzz/ links them into libFuzzer binaries, and the
        // tests replay the corpora through them.
        .target(name: "VirtioFuzzTargets", dependencies: ["VirtioCore", "VirtioGrants", "VirtioTransport", "VirtioDevices"]),
        // The conformance kit: the requirement catalog of Spec/, the test index and the matrix
        // generator, and the scripted front-end and back-end harnesses the conformance tests use
        // (raw ring writes, misbehaviour on demand, an access log), public for other devices.
        .target(name: "VirtioConformance", dependencies: ["VirtioCore", "VirtioGrants", "VirtioTransport"]),
        // Guest workloads that verify every reply (stream, throughput, latency) and the
        // network peer: what `virtio-grant guest` and `net-peer` run, and tests run in-process.
        .target(name: "VirtioWorkloads", dependencies: ["VirtioCore", "VirtioGrants", "VirtioTransport", "VirtioDevices"]),
        // The benchmarks `virtio-grant bench` runs: W1 (ring), grants, cross-process, scheduler.
        .target(name: "VirtioBenchmarks", dependencies: ["VirtioCore", "VirtioGrants", "VirtioTransport", "VirtioDevices", "VirtioScheduler", "VirtioWorkloads"]),
        .executableTarget(name: "virtio-grant", dependencies: ["VirtioCore", "VirtioGrants", "VirtioTransport", "VirtioDevices", "VirtioScheduler", "VirtioConformance", "VirtioWorkloads", "VirtioBenchmarks"]),
        .testTarget(name: "VirtioCoreTests", dependencies: ["VirtioCore", "VirtioConformance"]),
        .testTarget(name: "VirtioGrantsTests", dependencies: ["VirtioGrants", "VirtioCore", "VirtioConformance"]),
        .testTarget(name: "VirtioTransportTests", dependencies: ["VirtioTransport", "VirtioGrants", "VirtioCore", "VirtioDevices", "VirtioConformance", "virtio-grant"]),
        .testTarget(name: "VirtioDevicesTests", dependencies: ["VirtioDevices", "VirtioTransport", "VirtioCore"]),
        .testTarget(name: "VirtioSchedulerTests", dependencies: ["VirtioScheduler", "VirtioDevices", "VirtioTransport", "VirtioGrants", "VirtioCore", "VirtioWorkloads", "virtio-grant"]),
        .testTarget(name: "VirtioFuzzTargetsTests", dependencies: ["VirtioFuzzTargets"]),
        .testTarget(name: "VirtioWorkloadsTests", dependencies: ["VirtioWorkloads", "VirtioTransport", "VirtioDevices", "VirtioGrants", "VirtioCore"]),
        .testTarget(name: "VirtioConformanceTests", dependencies: ["VirtioConformance", "VirtioCore", "VirtioGrants", "VirtioTransport"]),
    ],
    swiftLanguageModes: [.v6]
)
