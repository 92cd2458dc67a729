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
        .library(name: "VirtioGrant", targets: ["VirtioGrant"]),
        .library(name: "VirtioSystem", targets: ["VirtioSystem"]),
        .library(name: "VhostUser", targets: ["VhostUser"]),
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
        // The OS layer: the only code that makes system calls (memfd, eventfd, epoll, unix
        // sockets, threads, clocks, processes, files, the SIGBUS truncation guard).
        .target(name: "VirtioSystem", dependencies: ["CVirtioShim", "VirtioCore"]),
        // The vhost-user protocol: message encoding and decoding, pure (no sockets), so it can be
        // fuzzed and reused on its own.
        .target(name: "VhostUser", dependencies: ["VirtioCore", "VirtioGrants"]),
        // The endpoints: the device API and its queue processor, BackEnd (sessions, queue
        // workers) and FrontEnd, over the vhost-user channels on unix sockets.
        .target(name: "VirtioTransport", dependencies: ["VirtioCore", "VirtioGrants", "VirtioSystem", "VhostUser"]),
        // The one import of a device author: re-exports exactly the device API.
        .target(name: "VirtioGrant", dependencies: ["VirtioCore", "VirtioSystem", "VirtioTransport"]),
        // Sample devices built only on the public API, used by the demo and the benchmarks.
        .target(name: "VirtioDevices", dependencies: ["VirtioCore", "VirtioSystem", "VirtioTransport"]),
        // m guests on n virtual functions of one device: the mapping table, obtain/release,
        // device models (reusable state, DMA legitimacy), policies, the resource accountant.
        .target(name: "VirtioScheduler", dependencies: ["VirtioCore", "VirtioGrants", "VirtioSystem", "VirtioTransport", "VirtioDevices"]),
        // The bodies of the fuzz targets: Fuzz/ links them into libFuzzer binaries, and the
        // tests replay the corpora through them.
        .target(name: "VirtioFuzzTargets", dependencies: ["VirtioCore", "VirtioGrants", "VirtioSystem", "VhostUser", "VirtioTransport", "VirtioDevices"]),
        // The conformance kit: the requirement catalog of Spec/, the test index and the matrix
        // generator, and the scripted front-end and back-end harnesses the conformance tests use
        // (raw ring writes, misbehaviour on demand, an access log), public for other devices.
        .target(name: "VirtioConformance", dependencies: ["VirtioCore", "VirtioGrants", "VirtioSystem", "VhostUser", "VirtioTransport"]),
        // Guest workloads that verify every reply (stream, throughput, latency) and the
        // network peer: what `virtio-grant guest` and `net-peer` run, and tests run in-process.
        .target(name: "VirtioWorkloads", dependencies: ["VirtioCore", "VirtioGrants", "VirtioSystem", "VirtioTransport", "VirtioDevices"]),
        // The benchmarks `virtio-grant bench` runs: W1 (ring), grants, cross-process, scheduler.
        .target(name: "VirtioBenchmarks", dependencies: ["VirtioCore", "VirtioGrants", "VirtioSystem", "VirtioTransport", "VirtioDevices", "VirtioScheduler", "VirtioWorkloads"]),
        .executableTarget(name: "virtio-grant", dependencies: ["VirtioCore", "VirtioGrants", "VirtioSystem", "VirtioTransport", "VirtioDevices", "VirtioScheduler", "VirtioConformance", "VirtioWorkloads", "VirtioBenchmarks"]),
        .testTarget(name: "VirtioCoreTests", dependencies: ["VirtioCore", "VirtioConformance"]),
        .testTarget(name: "VirtioSystemTests", dependencies: ["VirtioCore", "VirtioSystem"]),
        .testTarget(name: "VhostUserTests", dependencies: ["VirtioCore", "VirtioGrants", "VhostUser", "VirtioConformance"]),
        .testTarget(name: "VirtioGrantsTests", dependencies: ["VirtioCore", "VirtioGrants", "VirtioConformance"]),
        .testTarget(name: "VirtioTransportTests", dependencies: ["VirtioCore", "VirtioGrants", "VirtioSystem", "VhostUser", "VirtioTransport", "VirtioDevices", "VirtioConformance", "virtio-grant"]),
        .testTarget(name: "VirtioDevicesTests", dependencies: ["VirtioCore", "VirtioSystem", "VirtioTransport", "VirtioDevices"]),
        .testTarget(name: "VirtioSchedulerTests", dependencies: ["VirtioCore", "VirtioSystem", "VirtioTransport", "VirtioDevices", "VirtioScheduler", "VirtioConformance", "VirtioWorkloads", "virtio-grant"]),
        .testTarget(name: "VirtioFuzzTargetsTests", dependencies: ["VirtioFuzzTargets"]),
        .testTarget(name: "VirtioWorkloadsTests", dependencies: ["VirtioCore", "VirtioGrants", "VirtioSystem", "VirtioTransport", "VirtioDevices", "VirtioWorkloads"]),
        .testTarget(name: "VirtioBenchmarksTests", dependencies: ["VirtioCore", "VirtioSystem", "VirtioTransport", "VirtioBenchmarks", "virtio-grant"]),
        .testTarget(name: "VirtioConformanceTests", dependencies: ["VirtioCore", "VirtioGrants", "VhostUser", "VirtioConformance", "VirtioSystem", "VirtioTransport", "VirtioDevices", "virtio-grant"]),
    ],
    swiftLanguageModes: [.v6]
)
