import RandomDevice
import VirtioGrant

// random-device SOCKET: serves a RandomDevice to each front-end that connects to SOCKET (QEMU:
// -device vhost-user-rng-pci) until SIGINT or SIGTERM, then prints each session's report.
let socketPath = CommandLine.arguments.dropFirst().first ?? "/tmp/random-device.sock"
let backEnd = try BackEnd(socketPath: socketPath) { RandomDevice() }
let outcome = try backEnd.serveUntilSignal()
for report in outcome.reports {
    print(report)
}
