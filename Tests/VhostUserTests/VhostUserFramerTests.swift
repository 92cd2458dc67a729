import Testing
import VirtioConformance
import VirtioCore
import VirtioGrants
import VhostUser

@Suite("vhost-user framer", .tags(.vhostUser))
struct VhostUserFramerTests {
    /// Encoded samples with made-up descriptor values (1000 + message number × 10 + i).
    static func stream() throws -> [(bytes: [UInt8], fds: [Int32])] {
        try VU.samples.enumerated().map { n, message in
            (try VhostUserCodec.encode(message), (0..<message.fileDescriptorCount).map { Int32(1000 + n * 10 + $0) })
        }
    }

    @Test("GHT-VU-19: a message split at every byte offset comes out whole, with its descriptors")
    func splitEverywhere() throws {
        for (bytes, fds) in try Self.stream() {
            for cut in 1..<bytes.count {
                var framer = VhostUserFramer()
                let first = try framer.feed(bytes[..<cut], fileDescriptors: fds)
                #expect(first.isEmpty)
                #expect(!framer.isAtMessageBoundary && framer.bufferedByteCount == cut)
                #expect(framer.nextReadLength == (cut < 12 ? 12 - cut : bytes.count - cut))
                let second = try framer.feed(bytes[cut...])
                #expect(second.count == 1)
                #expect(second.first?.fileDescriptors == fds)
                #expect(second.first.map { [UInt8]($0.header.encoded() + $0.payload) } == bytes)
                #expect(framer.isAtMessageBoundary)
                try framer.finish()
            }
        }
    }

    @Test("GHT-VU-19: a stream without descriptors cut anywhere, or byte by byte, yields the same messages")
    func streamCuts() throws {
        let messages = try Self.stream().filter { $0.fds.isEmpty }.map(\.bytes)
        let all = Array(messages.joined())
        for cut in 0...all.count {
            var framer = VhostUserFramer()
            let frames = try framer.feed(all[..<cut]) + framer.feed(all[cut...])
            #expect(frames.map { $0.header.encoded() + $0.payload } == messages)
        }
        var framer = VhostUserFramer()
        var frames: [VhostUserFrame] = []
        for byte in all { frames += try framer.feed(CollectionOfOne(byte)) }
        #expect(frames.map { $0.header.encoded() + $0.payload } == messages)
        #expect(try frames.map { try VhostUserCodec.decode($0) } == VU.samples.filter { $0.fileDescriptorCount == 0 })
    }

    @Test("GHT-VU-19: several messages in one chunk; its descriptors belong to the first")
    func severalInOneChunk() throws {
        let table = try VhostUserCodec.encode(.setMemoryTable(VhostUserMemoryTable(regions: [VU.region0, VU.region1])))
        let tail = try VhostUserCodec.encode(.getFeatures) + VhostUserCodec.encode(.setVringNum(VhostUserVringState(index: 0, num: 8)))
        var framer = VhostUserFramer()
        let frames = try framer.feed(table + tail + tail.prefix(5), fileDescriptors: [7, 8])
        #expect(frames.count == 3)
        #expect(frames.map(\.fileDescriptors) == [[7, 8], [], []])
        #expect(try VhostUserCodec.decode(frames[0]) == .setMemoryTable(VhostUserMemoryTable(regions: [VU.region0, VU.region1])))
        #expect(framer.bufferedByteCount == 5)
    }

    @Test("GHT-VU-19: reads of nextReadLength deliver every message with its own descriptors")
    func boundedReads() throws {
        var rng = SplitMix64(seed: 19)
        let stream = try Self.stream()
        let all = Array(stream.map(\.bytes).joined())
        var starts: [Int: [Int32]] = [:]
        var offset = 0
        for (bytes, fds) in stream {
            starts[offset] = fds
            offset += bytes.count
        }
        var framer = VhostUserFramer()
        var frames: [VhostUserFrame] = []
        var position = 0
        while position < all.count {
            // A socket read of at most nextReadLength bytes; descriptors come with a message's first byte.
            let length = Int.random(in: 1...framer.nextReadLength, using: &rng)
            let fds = starts[position] ?? []
            frames += try framer.feed(all[position..<(position + length)], fileDescriptors: fds)
            position += length
        }
        try framer.finish()
        #expect(frames.count == stream.count)
        #expect(frames.map(\.fileDescriptors) == stream.map(\.fds))
        #expect(try frames.map { try VhostUserCodec.decode($0) } == VU.samples)
    }

    @Test("GHT-VU-04, GHT-VU-19: an oversized header is refused at once, with no payload byte buffered")
    func oversized() throws {
        var framer = VhostUserFramer()
        let header = VU.le32(5) + VU.le32(1) + VU.le32(0xFFFF_FFFF)
        _ = try framer.feed(header.prefix(11), fileDescriptors: [3])
        #expect(throws: VhostUserProtocolError.payloadTooLarge(size: 0xFFFF_FFFF, maximum: 4096)) {
            try framer.feed(header.suffix(1) + [UInt8](repeating: 0xAA, count: 100))
        }
        #expect(framer.bufferedByteCount == 0)
        #expect(framer.error == .payloadTooLarge(size: 0xFFFF_FFFF, maximum: 4096))
        // Failed for good: later input is refused and its descriptors kept for closing.
        #expect(throws: VhostUserProtocolError.payloadTooLarge(size: 0xFFFF_FFFF, maximum: 4096)) {
            try framer.feed(try VhostUserCodec.encode(.getFeatures), fileDescriptors: [4])
        }
        #expect(framer.takeFileDescriptors() == [3, 4])
        #expect(framer.takeFileDescriptors().isEmpty)
        // The largest payload is accepted and buffered whole.
        var big = VhostUserFramer()
        let frames = try big.feed(VU.le32(26) + VU.le32(1) + VU.le32(4096) + [UInt8](repeating: 1, count: 4096))
        #expect(frames.count == 1 && frames[0].payload.count == 4096)
    }

    @Test("GHT-VU-01, GHT-VU-19: a bad version or reserved flag fails the framer at the header")
    func badHeader() {
        var framer = VhostUserFramer()
        #expect(throws: VhostUserProtocolError.unsupportedVersion(2)) { try framer.feed(VU.le32(1) + VU.le32(2) + VU.le32(0)) }
        var other = VhostUserFramer()
        #expect(throws: VhostUserProtocolError.reservedFlags(0x41)) { try other.feed(VU.le32(1) + VU.le32(0x41) + VU.le32(0)) }
    }

    @Test("GHT-VU-19: descriptors in the middle of a message, without data, or too many, are refused")
    func misplacedDescriptors() throws {
        let bytes = try VhostUserCodec.encode(.setVringNum(VhostUserVringState(index: 0, num: 8)))
        var framer = VhostUserFramer()
        _ = try framer.feed(bytes.prefix(3), fileDescriptors: [10])
        #expect(throws: VhostUserProtocolError.fileDescriptorsMidMessage(count: 1)) { try framer.feed(bytes.dropFirst(3), fileDescriptors: [11]) }
        #expect(framer.takeFileDescriptors() == [10, 11])

        var empty = VhostUserFramer()
        #expect(throws: VhostUserProtocolError.fileDescriptorsWithoutData(count: 2)) { try empty.feed([UInt8](), fileDescriptors: [1, 2]) }
        #expect(empty.takeFileDescriptors() == [1, 2])

        var many = VhostUserFramer()
        let nine = (0..<9).map { Int32($0) }
        #expect(throws: VhostUserProtocolError.tooManyFileDescriptors(count: 9, maximum: 8)) { try many.feed(bytes, fileDescriptors: nine) }
        #expect(many.takeFileDescriptors() == nine)
    }

    @Test("GHT-VU-19: descriptors of frames completed in a failing chunk are handed back, not lost")
    func descriptorsNeverLost() throws {
        let kick = try VhostUserCodec.encode(.setVringKick(VhostUserVringFile(index: 0)))
        var framer = VhostUserFramer()
        #expect(throws: VhostUserProtocolError.unsupportedVersion(0)) {
            try framer.feed(kick + VU.le32(1) + VU.le32(0) + VU.le32(0), fileDescriptors: [42])
        }
        #expect(framer.takeFileDescriptors() == [42])
    }

    @Test("GHT-VU-19: the stream ending inside a message is reported")
    func truncated() throws {
        var framer = VhostUserFramer()
        _ = try framer.feed(try VhostUserCodec.encode(.setFeatures([.version1])).prefix(15), fileDescriptors: [5])
        #expect(throws: VhostUserProtocolError.truncatedMessage(buffered: 15)) { try framer.finish() }
        #expect(framer.takeFileDescriptors() == [5])
        var clean = VhostUserFramer()
        #expect(throws: Never.self) { try clean.finish() }
    }
}
