import Testing
import VirtioCore
import VirtioSystem
import VirtioTransport
@testable import VirtioBenchmarks

/// The pieces of `bench blk` that need no long run: percentiles, `/proc/PID/stat`, the
/// verification phase (it must catch a back-end that answers OK with the wrong bytes), and a
/// short run against our back-end in a process of its own.
@Suite struct BlockBenchmarkTests {
    @Test("percentile: nearest rank, ends and empty input")
    func percentiles() {
        let values: [UInt64] = Array(1...100)
        #expect(percentile(values, 50) == 50)
        #expect(percentile(values, 99) == 99)
        #expect(percentile(values, 100) == 100)
        #expect(percentile(values, 0) == 1)
        #expect(percentile([7], 99) == 7)
        #expect(percentile([1, 2, 3], 50) == 2)
        #expect(percentile([], 50) == nil)
    }

    @Test("/proc/PID/stat: utime + stime counted after the last ')' of the command name")
    func statParsing() {
        // A command name with spaces and parentheses must not shift the fields.
        let text = "4242 (a) b (c) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 3 4 20 0 1 0 100 1000 10\n"
        #expect(ProcessCPU.seconds(statText: text) == 3.25)
        #expect(ProcessCPU.seconds(statText: "4242 (short) S 1 2") == nil)
        #expect(ProcessCPU.seconds(statText: "no parenthesis") == nil)
        #expect(ProcessCPU.seconds(pid: CurrentProcess.id) != nil)
    }

    @Test("verification: a back-end that answers reads OK with the wrong bytes is caught")
    func verificationCatchesWrongData() throws {
        let directory = try TemporaryDirectory(prefix: "blk-bench-test")
        defer { directory.remove() }
        let socket = directory.path + "/wrong.sock"
        let backEnd = try BackEnd(socketPath: socket) { ForgetfulDisk() }
        backEnd.start()
        defer { backEnd.stop() }
        let frontEnd = try BlockBenchmark().connect(socket, queues: 1, depth: 32)
        defer { frontEnd.close() }
        let check = BlockVerification.run(frontEnd, blocks: 16, diskBlocks: 1024, nonce: 99)
        #expect(check.written == 16 && check.readBack == 16)
        #expect(check.mismatches == 16)
        #expect(!check.ok)
    }

    @Test("smoke: 0.2 s of QD 4 random reads and writes against our back-end; it verifies")
    func smokeAgainstOurs() throws {
        let directory = try TemporaryDirectory(prefix: "blk-bench-test")
        defer { directory.remove() }
        let image = directory.path + "/disk.img", socket = directory.path + "/ours.sock"
        try TextFile.write(bytes: [UInt8](repeating: 0x5A, count: 4 << 20), to: image)
        let backEnd = try BlockBackEndProcess(kind: .ours, direct: false, queues: 2, image: image, socket: socket,
                                              extraArguments: [], qsdPath: "", core: nil)
        defer { backEnd.stop() }
        var benchmark = BlockBenchmark()
        benchmark.seconds = 0.2
        benchmark.warmUp = 0.05
        let diskBlocks = UInt64(4 << 20) / UInt64(BlockBenchmark.blockBytes)

        let verifier = try benchmark.connect(socket, queues: 2, depth: 32)
        let check = BlockVerification.run(verifier, blocks: 16, diskBlocks: diskBlocks, nonce: 7)
        verifier.close()
        #expect(check.ok, "\(check)")
        #expect(check.readBack == 32)
        #expect(backEnd.sessionReport()?.int("broken_queues") == 0)

        for operation in [BlockBenchmark.Operation.randread, .randwrite] {
            let point = BlockPoint(benchmark: benchmark, operation: operation, depth: 4, client: .poll, diskBlocks: diskBlocks)
            let frontEnd = try benchmark.connect(socket, queues: 2, depth: 4)
            let result = point.run(frontEnd, backEndPID: backEnd.pid)
            frontEnd.close()
            #expect(result.ok, "\(operation): \(result.failure ?? "errors \(result.errors)")")
            #expect(result.iops > 0)
            #expect(!result.latencies.isEmpty)
            #expect(result.backEndCPU >= 0 && result.wallSeconds > 0.15)
            #expect(backEnd.sessionReport()?.int("broken_queues") == 0)
        }
    }
}

/// A block device that is fast because it is wrong: every request succeeds, writes are
/// dropped and reads return zeros.
final class ForgetfulDisk: VirtioDevice {
    let deviceID: UInt32 = 2
    let deviceFeatures: VirtioFeatures = []
    let queueCount = 1
    let maxQueueSize = 256

    func process(queue: Int, batch: inout RequestBatch) {
        for i in 0..<batch.count {
            var writer = batch.writer(i)
            guard writer.capacity >= 1 else { batch.complete(i, usedLength: 0); continue }
            writer.writeZeros(writer.remaining)   // the status byte too: 0 is OK
            batch.complete(i, with: writer)
        }
    }

    func reset() {}
}
