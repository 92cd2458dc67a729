// swift-tools-version:6.0
//
// The example of Documentation/WritingADevice.md: a virtio-rng device in a package of its own,
// depending on VirtioGrant by path. Built and served by the root package's tests
// (ExamplePackageTests), so it stays in step with the guide.

import PackageDescription

let package = Package(
    name: "RandomDevice",
    products: [
        .executable(name: "random-device", targets: ["random-device"]),
    ],
    dependencies: [
        // A path dependency is known by the last component of its path, not by the name in its
        // manifest: without `name:`, this one would be whatever the checkout's directory is
        // called. `name:` fixes it to "VirtioGrant" for the `.product(package:)` lines below.
        .package(name: "VirtioGrant", path: "../.."),
    ],
    targets: [
        // The device: `import VirtioGrant` is all it needs.
        .target(name: "RandomDevice", dependencies: [.product(name: "VirtioGrant", package: "VirtioGrant")]),
        // The back-end process: serves the device until SIGINT or SIGTERM.
        .executableTarget(name: "random-device", dependencies: ["RandomDevice", .product(name: "VirtioGrant", package: "VirtioGrant")]),
        // Its tests: one batch by hand (RequestBatch.testing), the vhost-user surface through
        // the conformance harness, and requests through a Swift front-end.
        .testTarget(name: "RandomDeviceTests", dependencies: [
            "RandomDevice",
            .product(name: "VirtioGrant", package: "VirtioGrant"),
            .product(name: "VirtioConformance", package: "VirtioGrant"),
            .product(name: "VirtioTransport", package: "VirtioGrant"),
            .product(name: "VhostUser", package: "VirtioGrant"),
        ]),
    ],
    swiftLanguageModes: [.v6]
)
