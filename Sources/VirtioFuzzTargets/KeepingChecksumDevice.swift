import Synchronization
import VirtioCore
import VirtioDevices
import VirtioTransport

/// The hostile session's device: a checksum echo that keeps the requests whose first byte is
/// odd (GHT-ASY-01) and answers them later, newest first, from another thread (the fuzzer's
/// kicker), so that stops, resets, memory changes and broken queues meet requests inside the
/// device, completed before, during and after them.
final class KeepingChecksumDevice: VirtioDevice, @unchecked Sendable {
    let deviceID: UInt32 = 0xFFFF
    let deviceFeatures: VirtioFeatures = []
    let queueCount = 2
    let maxQueueSize = 256
    private let kept = Locked<[InFlightRequest]>([])

    func readConfig() -> [UInt8] { ChecksumEchoDevice(queueCount: 2, maxQueueSize: 256).readConfig() }
    func reset() {}

    func process(queue: Int, batch: inout RequestBatch) {
        withUnsafeTemporaryAllocation(byteCount: ChecksumEchoDevice.chunkSize, alignment: 16) { chunk in
            for i in 0..<batch.count {
                var reader = batch.reader(i)
                let first = (try? reader.read(UInt8.self)) ?? 0
                if first & 1 == 1 {
                    let request = batch.completeLater(i)
                    kept.withLock { $0.append(request) }
                } else {
                    var whole = batch.reader(i)
                    batch.complete(i, with: ChecksumEchoDevice.answer(&whole, batch.writer(i), chunk: chunk))
                }
            }
        }
    }

    /// Answers every kept request, newest first; a completion refused (its queue stopped, was
    /// reset or broke) is dropped.
    func answerKept() {
        let all = kept.withLock { k in
            defer { k.removeAll() }
            return k
        }
        withUnsafeTemporaryAllocation(byteCount: ChecksumEchoDevice.chunkSize, alignment: 16) { chunk in
            for request in all.reversed() {
                var reader = request.reader()
                request.complete(with: ChecksumEchoDevice.answer(&reader, request.writer(), chunk: chunk))
            }
        }
    }
}
