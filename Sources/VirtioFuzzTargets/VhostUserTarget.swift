import Synchronization
import VirtioCore
import VirtioDevices
import VirtioTransport
import VirtioSystem
import VhostUser

/// Fuzz target: the vhost-user control plane of a back-end, from the bytes up.
///
/// Input: a sequence of steps — a chunk of message bytes sent with 0–15 descriptors (eventfds
/// or a shared memfd), a write into the shared memfd (so that rings a session starts contain
/// fuzzed chains), a kick on the eventfd. The message bytes go twice through the back-end:
/// through the framer and codec alone (every decoded message must encode and decode back to
/// itself), and through a real session (`BackEnd.serve(connection:)` on one end of a socket
/// pair, the checksum device behind it) that runs until the input ends.
///
/// Checked inside: the session ends when the front-end's side is shut (never a hang); every
/// descriptor the session received or made is closed by then (the process's count is back
/// to what it was); nothing traps.
public enum VhostUserTarget {
    static let memorySize = 64 * 1024

    public static func run(_ data: UnsafeRawBufferPointer) {
        _ = session(data)
    }

    /// Runs the input and returns the session's report (for tests that check how deep a seed goes).
    public static func session(_ data: UnsafeRawBufferPointer) -> SessionReport? {
        var input = FuzzInput(data)
        var steps: [Step] = []
        while !input.isExhausted && steps.count < 256 { steps.append(Step(&input)) }
        roundTrip(steps)
        return serve(steps)
    }

    /// One step of the front-end's script.
    enum Step {
        case message(bytes: [UInt8], fds: Int, memfd: Bool)
        case memory(offset: Int, bytes: [UInt8])
        case kick

        init(_ input: inout FuzzInput) {
            switch input.byte() % 8 {
            case 0:
                self = .memory(offset: Int(input.integer(UInt16.self)) % VhostUserTarget.memorySize, bytes: input.take(Int(input.byte())))
            case 1:
                self = .kick
            default:
                let spec = input.byte()
                self = .message(bytes: input.take(Int(input.integer(UInt16.self) % 8192)), fds: Int(spec & 0xF), memfd: spec & 0x10 != 0)
            }
        }
    }

    /// The framer and codec alone: what decodes, encodes back to the same message.
    static func roundTrip(_ steps: [Step]) {
        var framer = VhostUserFramer()
        for case .message(let bytes, let fds, _) in steps {
            let frames: [VhostUserFrame]
            do {
                frames = try framer.feed(bytes, fileDescriptors: (0..<fds).map { Int32(1000 + $0) })
            } catch {
                return
            }
            for frame in frames {
                guard let message = try? VhostUserCodec.decode(frame) else { continue }
                let encoded: [UInt8]
                do {
                    encoded = try VhostUserCodec.encode(message, needReply: frame.header.needsReply)
                } catch {
                    fuzzCheck(false, "\(message.request) decoded but does not encode: \(error)")
                    return
                }
                var again = VhostUserFramer()
                let reframed = try? again.feed(encoded, fileDescriptors: frame.fileDescriptors)
                fuzzCheck(reframed?.count == 1, "an encoded message does not frame as one")
                fuzzCheck((try? VhostUserCodec.decode(reframed![0])) == message, "\(message.request) does not survive encode and decode")
            }
        }
    }

    /// A real session over a socket pair.
    ///
    /// The leak check counts the descriptors that refer to this session's own memfd, doorbell
    /// and socket pair (by identity, not by number), so sessions and tests running beside it in
    /// the same process do not disturb it.
    static func serve(_ steps: [Step]) -> SessionReport? {
        let report: SessionReport?
        var ownIdentities: [String] = []
        do {
            // A name of its own: its identity tells it from the memfd of a session running beside it.
            let memory = try SharedMemory.create(name: "fuzz-memory-\(UInt64.random(in: 0...UInt64.max))", size: memorySize)
            let doorbell = try Doorbell()
            let (ours, theirs) = try UnixSocket.pair()
            ownIdentities = [memory.fd.rawValue, doorbell.fd.rawValue, ours.fd.rawValue, theirs.fd.rawValue].compactMap { fileIdentity(of: $0) }
            let reports = Locked<SessionReport?>(nil)
            let session = WorkerThread(name: "fuzz-session") {
                let report = BackEnd.serve(connection: theirs, device: ChecksumEchoDevice(queueCount: 2, maxQueueSize: 256), configuration: .silent)
                reports.withLock { $0 = report }
            }
            // Replies are drained on their own thread, so that neither side can block the other.
            let replies = WorkerThread(name: "fuzz-replies") {
                var buffer = [UInt8](repeating: 0, count: 4096)
                while true {
                    let n = try? buffer.withUnsafeMutableBytes { try ours.receive(into: $0, maxFileDescriptors: 0).count }
                    if (n ?? 0) == 0 { return }
                }
            }
            for step in steps {
                switch step {
                case .message(let bytes, let fds, let memfd):
                    // Descriptors travel with a byte (the sending API's precondition).
                    let fd = memfd ? memory.fd.rawValue : doorbell.fd.rawValue
                    if (try? ours.send(bytes, fds: Array(repeating: fd, count: bytes.isEmpty ? 0 : fds))) == nil { break }
                case .memory(let offset, let bytes):
                    _ = bytes.withUnsafeBytes { memory.range.copyBytes(to: offset, from: UnsafeRawBufferPointer(rebasing: $0.prefix(memorySize - offset))) }
                case .kick:
                    try? doorbell.signal()
                }
            }
            try? ours.shutdownWriting()
            session.join()
            replies.join()
            ours.close()
            theirs.close()
            report = reports.withLock { $0 }
            fuzzCheck(report?.end != nil, "the session did not end")
            // Left open: the memfd and the doorbell, once each (the socket pair is closed).
            let open = ((try? openFileIdentities()) ?? []).filter { ownIdentities.contains($0) }
            fuzzCheck(ownIdentities.count < 4 || open.count == 2, "descriptors leaked: \(open)")
        } catch {
            return nil   // out of descriptors or memory: not the session's doing
        }
        return report
    }
}
