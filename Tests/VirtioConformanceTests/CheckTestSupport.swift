import Testing
#if canImport(Glibc)
import Glibc
#endif
import VirtioConformance
import VirtioDevices
import VirtioSystem
import VirtioTransport

/// The checker's tests run one at a time: they count processes, files and descriptors.
@Suite("The black-box back-end checker", .serialized)
struct CheckerTests {}

enum CheckSupport {
    static var program: String { (try? ChildProcess.executableDirectory + "/virtio-grant") ?? "virtio-grant" }

    /// `virtio-grant check-faulty-backend` with `fault`, as a `--backend-cmd` line.
    static func faulty(_ fault: FaultyBlockBackEnd.Fault) -> CheckTarget {
        .command("\(program) check-faulty-backend --fault \(fault.rawValue) --socket {sock}")
    }

    static func run(_ target: CheckTarget, _ filter: String? = nil, timeout: Int = 1000) -> [CheckResult] {
        BackEndChecker(target: target, device: .blk, timeoutPerCaseMilliseconds: timeout).run(cases: BackEndChecker.cases(matching: filter))
    }

    static func result(_ results: [CheckResult], _ name: String) -> CheckResult? { results.first { $0.name == name } }

    static func socketPath(_ tag: String) -> String {
        "/tmp/vg-check-\(tag)-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
    }

    /// A disk image of `sectors` zero sectors in a fresh temporary directory.
    static func image(sectors: Int = 2048) throws -> (TemporaryDirectory, String) {
        let directory = try TemporaryDirectory(prefix: "vg-check-image")
        let path = directory.path + "/disk.img"
        try TextFile.write(bytes: [UInt8](repeating: 0, count: sectors * 512), to: path)
        return (directory, path)
    }

    /// This project's blk back-end in this process, on a fresh socket.
    static func ownBlockBackEnd(image: String) throws -> (BackEnd, String) {
        let path = socketPath("own")
        var configuration = BackEndConfiguration()
        configuration.logSink = nil
        let file = try StorageFile(path: image, writable: true)
        let backEnd = try BackEnd(socketPath: path, configuration: configuration) { BlockDevice(file: file) }
        backEnd.start()
        return (backEnd, path)
    }

    /// The files this process holds open whose name says the checker made them.
    static func checkerFilesOpen() -> [String] {
        ((try? openFileIdentities()) ?? []).filter { $0.contains("check-memory") || $0.contains("check-backend-output") || $0.contains("virtio-grant-check") }
    }

    static func summary(_ results: [CheckResult]) -> String {
        results.filter { $0.outcome != .pass }.map { "\($0.name): \($0.outcome.rawValue)\n\($0.evidence.prefix(1500))" }.joined(separator: "\n\n")
    }
}
