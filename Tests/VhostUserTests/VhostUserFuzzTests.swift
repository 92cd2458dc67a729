import Testing
import VirtioConformance
import VirtioCore
import VirtioGrants
import VhostUser

/// Randomized hostile input, from a fixed seed so that a failure replays. Each decoder must
/// return a message or a ``VhostUserProtocolError`` — never trap — and the framer must stay
/// within its bounds and lose no descriptor.
@Suite("vhost-user codec: randomized input", .tags(.vhostUser))
struct VhostUserFuzzTests {
    static let knownRequests = VhostUserRequest.allCases.map(\.rawValue)

    /// A header that is usually plausible (known request, version 1, small size), sometimes not.
    static func randomHeader(_ rng: inout SplitMix64, payloadSize: Int) -> VhostUserHeader {
        let request = Bool.random(using: &rng) ? knownRequests.randomElement(using: &rng)! : UInt32.random(in: 0...1100, using: &rng)
        let flags: UInt32 = Int.random(in: 0..<8, using: &rng) == 0 ? UInt32.random(in: 0...0xF, using: &rng) : 1
        return VhostUserHeader(request: request, flags: VhostUserHeaderFlags(rawValue: flags), payloadSize: UInt32(payloadSize))
    }

    static func randomPayload(_ rng: inout SplitMix64) -> [UInt8] {
        let sizes = [0, 8, 12, 16, 26, 32, 40, 264, 268, Int.random(in: 0...300, using: &rng)]
        return (0..<sizes.randomElement(using: &rng)!).map { _ in
            // Mostly small values and 0xFF runs, which hit the edges of counts and sizes.
            switch Int.random(in: 0..<4, using: &rng) {
            case 0: return 0
            case 1: return 0xFF
            default: return UInt8.random(in: 0...255, using: &rng)
            }
        }
    }

    @Test("GHT-VU-20: random headers, payloads and descriptor counts never crash any decoder")
    func randomMessages() {
        var rng = SplitMix64(seed: 0x5EED_0001)
        var accepted = 0
        for _ in 0..<40_000 {
            let payload = Self.randomPayload(&rng)
            let header = Self.randomHeader(&rng, payloadSize: payload.count)
            let fds = Int.random(in: -1...9, using: &rng)
            if (try? VhostUserCodec.decode(header: header, payload: payload, fileDescriptorCount: fds)) != nil { accepted += 1 }
            let request = VU.samples.randomElement(using: &rng)!
            var reply = header
            reply.flags.insert(.reply)
            _ = try? VhostUserCodec.decodeReply(header: reply, payload: payload, fileDescriptorCount: fds, answering: request)
            _ = try? VhostUserCodec.decodeBackEndMessage(header: header, payload: payload, fileDescriptorCount: fds)
            _ = try? VhostUserCodec.decodeBackEndReply(header: reply, payload: payload, fileDescriptorCount: fds,
                                                        answering: VhostUserBackEndRequest.allCases.randomElement(using: &rng)!)
            // A header whose size disagrees with the payload.
            var lying = header
            lying.payloadSize = UInt32.random(in: 0...UInt32.max, using: &rng)
            _ = try? VhostUserCodec.decode(header: lying, payload: payload, fileDescriptorCount: fds)
        }
        #expect(accepted > 0, "some random messages are well-formed")
    }

    @Test("GHT-VU-20: mutated valid messages never crash the decoder; what decodes re-encodes to the same message")
    func mutatedMessages() throws {
        var rng = SplitMix64(seed: 0x5EED_0002)
        for _ in 0..<40_000 {
            let message = VU.samples.randomElement(using: &rng)!
            var bytes = try VhostUserCodec.encode(message)
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                let i = Int.random(in: 0..<bytes.count, using: &rng)
                bytes[i] ^= UInt8(1) << UInt8.random(in: 0...7, using: &rng)
            }
            guard let header = try? VhostUserHeader.decode(bytes) else { continue }
            let payload = bytes.dropFirst(12).prefix(Int(header.payloadSize))
            let fds = message.fileDescriptorCount + Int.random(in: -1...1, using: &rng)
            guard let decoded = try? VhostUserCodec.decode(header: header, payload: payload, fileDescriptorCount: fds) else { continue }
            // Whatever is accepted is valid: it encodes again and decodes to itself.
            let again = try VhostUserCodec.encode(decoded, needReply: header.needsReply)
            #expect(try VU.decode(again, fds: fds) == decoded)
        }
    }

    @Test("GHT-VU-19, GHT-VU-20: random streams never crash the framer, stay bounded and lose no descriptor")
    func randomStreams() throws {
        var rng = SplitMix64(seed: 0x5EED_0003)
        var next: Int32 = 0
        for _ in 0..<2_000 {
            var framer = VhostUserFramer()
            var fed: [Int32] = []
            var returned: [Int32] = []
            for _ in 0..<Int.random(in: 1...20, using: &rng) {
                // Mostly valid messages, sometimes garbage, cut at random.
                var chunk: [UInt8]
                if Bool.random(using: &rng) {
                    chunk = try VhostUserCodec.encode(VU.samples.randomElement(using: &rng)!)
                    chunk = Array(chunk.prefix(Int.random(in: 0...chunk.count, using: &rng)))
                } else {
                    chunk = Self.randomPayload(&rng)
                }
                let fds = (0..<(Int.random(in: 0..<5, using: &rng) == 0 ? Int.random(in: 0...10, using: &rng) : 0)).map { _ -> Int32 in
                    next += 1
                    return next
                }
                fed += fds
                if let frames = try? framer.feed(chunk, fileDescriptors: fds) {
                    returned += frames.flatMap(\.fileDescriptors)
                    for frame in frames {
                        #expect(frame.payload.count == Int(frame.header.payloadSize) && frame.payload.count <= 4096)
                        #expect(frame.fileDescriptors.count <= VhostUserHeader.maximumFileDescriptors)
                        _ = try? VhostUserCodec.decode(frame)
                    }
                }
                #expect(framer.bufferedByteCount <= VhostUserHeader.byteCount + VhostUserHeader.maximumPayloadSize)
            }
            _ = try? framer.finish()
            returned += framer.takeFileDescriptors()
            #expect(returned.sorted() == fed.sorted(), "every descriptor is returned in a frame or handed back")
        }
    }

    @Test("GHT-VU-20: random byte strings of every short length never crash the header decoder")
    func randomHeaders() {
        var rng = SplitMix64(seed: 0x5EED_0004)
        for _ in 0..<20_000 {
            let bytes = (0..<Int.random(in: 0...16, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            _ = try? VhostUserHeader.decode(bytes)
        }
    }
}
