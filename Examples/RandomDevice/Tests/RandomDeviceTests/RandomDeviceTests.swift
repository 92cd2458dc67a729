import RandomDevice
import Testing
import VhostUser
import VirtioConformance
import VirtioGrant
import VirtioTransport

@Suite("RandomDevice")
struct RandomDeviceTests {
    @Test("One batch by hand: every writable byte is filled and the used length says so")
    func batchByHand() {
        // Two requests over host memory of the test's own: 64 writable bytes in one fragment,
        // then 100 in two fragments (40 + 60), after 8 readable bytes the device ignores.
        let memory = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 64)
        defer { memory.deallocate() }
        memory.initializeMemory(as: UInt8.self, repeating: 0)
        let fragment = { (offset: Int, count: Int) in HostRange(unsafeBase: memory.baseAddress! + offset, count: count) }
        var batch = RequestBatch.testing(
            fragments: [fragment(0, 64), fragment(512, 8), fragment(1024, 40), fragment(2048, 60)],
            requests: [(readable: 0..<0, writable: 0..<1), (readable: 1..<2, writable: 2..<4)])
        RandomDevice().process(queue: 0, batch: &batch)
        #expect(batch.usedLength(0) == 64)
        #expect(batch.usedLength(1) == 100)
        // 64 random bytes are all zero with probability 2^-512.
        #expect(memory[0..<64].contains { $0 != 0 })
        #expect(memory[512..<520].allSatisfy { $0 == 0 }, "readable bytes are not written")
    }

    @Test("The vhost-user surface, through the conformance harness: one queue, VERSION_1, no CONFIG offered")
    func vhostUserSurface() throws {
        let path = "/tmp/random-device-test-\(UInt32.random(in: 0...UInt32.max)).sock"
        let backEnd = try BackEnd(socketPath: path) { RandomDevice() }
        backEnd.start()
        defer { backEnd.stop() }
        let client = try ScriptedVhostUserFrontEnd(path: path)
        defer { client.close() }
        try client.send(.getProtocolFeatures)
        guard case .protocolFeatures(let offered) = try client.reply(to: .getProtocolFeatures) else {
            throw ScriptedVhostUserFrontEnd.Unexpected("GET_PROTOCOL_FEATURES")
        }
        #expect(!offered.contains(.config), "a device without a configuration space is not offered CONFIG")
        let features = try client.negotiate([.replyAck, .status])
        #expect(features.contains(.version1))
        try client.send(.getQueueNum)
        #expect(try client.reply(to: .getQueueNum) == .queueCount(1))
    }

    @Test("Requests through a Swift front-end come back full of random bytes")
    func frontEnd() throws {
        let path = "/tmp/random-device-test-\(UInt32.random(in: 0...UInt32.max)).sock"
        let backEnd = try BackEnd(socketPath: path) { RandomDevice() }
        backEnd.start()
        defer { backEnd.stop() }
        let frontEnd = try FrontEnd.connect(socketPath: path)
        defer { frontEnd.close() }
        let queue = frontEnd.queues[0]
        let tokens = try (0..<4).map { _ in try queue.submit([], replyCapacity: 256) }
        try queue.publish()
        var replies: [UInt64: [UInt8]] = [:]
        while replies.count < tokens.count {
            for completion in try queue.waitForCompletions(timeoutMilliseconds: 5000) { replies[completion.token] = completion.reply }
        }
        #expect(tokens.allSatisfy { replies[$0]?.count == 256 })
        #expect(Set(replies.values).count == 4, "four different random replies")
    }
}
