import Testing
import VirtioCore
import VirtioDevices
import VirtioSystem
@testable import VirtioTransport

/// Transmits `frames` from `device` as one batch (one burst), each behind a zero header.
func sendBurst(_ device: NetworkDevice, _ frames: [[UInt8]]) {
    let stride = NetworkHeader.byteCount + NetworkSwitch.maxFrameSize
    let memory = GuestMemoryRegion(size: max(frames.count, 1) * stride)
    for (i, frame) in frames.enumerated() {
        memory.write([UInt8](repeating: 0, count: NetworkHeader.byteCount) + frame, at: UInt64(i * stride))
    }
    let fragments = frames.indices.map { memory.range.slice(offset: $0 * stride, length: NetworkHeader.byteCount + frames[$0].count) }
    var batch = RequestBatch.testing(fragments: fragments, requests: frames.indices.map { ($0..<($0 + 1), ($0 + 1)..<($0 + 1)) })
    withExtendedLifetime(memory) { device.process(queue: NetworkDevice.transmitQueue, batch: &batch) }
    for i in frames.indices { #expect(batch.usedLength(i) == 0) }
}

@Suite("virtio-net bursts")
struct NetworkBurstTests {
    @Test("GHT-NET-08: a frame arriving at an empty port queue rings the receive doorbell once; frames arriving while others wait do not ring it")
    func doorbellOnEmptyOnly() throws {
        let networkSwitch = NetworkSwitch()
        let a = NetworkDevice(switch: networkSwitch), b = NetworkDevice(switch: networkSwitch)
        let bell = try Doorbell()
        b.queueStarted(NetworkDevice.receiveQueue, doorbell: QueueDoorbell(bell))
        let frames = (0..<10).map { Ports.frame(to: b.mac, from: a.mac, fill: UInt8($0)) }
        sendBurst(a, frames)
        #expect(try bell.drain() == 1, "one ring for a burst into an empty queue")
        sendBurst(a, frames)
        for f in frames { Ports.send(a, f) }
        #expect(b.readyBuffers(queue: NetworkDevice.receiveQueue) == 30)
        #expect(try bell.wait(timeoutMilliseconds: 0) == false, "no ring while frames wait")
        #expect(Ports.receive(b) == frames + frames + frames, "in arrival order")
        Ports.send(a, frames[0])
        #expect(try bell.drain() == 1, "the queue was empty again")
        b.queueStopped(NetworkDevice.receiveQueue)
    }

    @Test("GHT-NET-09: a batch is switched as one burst, frame by frame in order: an address one frame teaches the switch routes the next frame of the same batch")
    func burstSeesItsOwnLearning() {
        let networkSwitch = NetworkSwitch(lockedPorts: false)
        let a = NetworkDevice(switch: networkSwitch), b = NetworkDevice(switch: networkSwitch)
        let x = EthernetAddress(0x02, 0, 0, 0, 0, 0x0a), y = EthernetAddress(0x02, 0, 0, 0, 0, 0x0b)
        // 1: to y, unknown: flooded to b. 2: from y (learned behind a) to y: nowhere.
        // 3: to y, now behind a itself: nowhere, though frame 1 to the same address was flooded.
        sendBurst(a, [Ports.frame(to: y, from: x, fill: 1), Ports.frame(to: y, from: y, fill: 2), Ports.frame(to: y, from: x, fill: 3)])
        let received = Ports.receive(b)
        #expect(received.count == 1 && received.first?[20] == 1)
        #expect(a.statistics.framesSent == 3)
        // And the other way: b's address, known from the start, gets a whole burst, in order.
        let toB = (0..<64).map { Ports.frame(to: b.mac, from: x, fill: UInt8($0)) }
        sendBurst(a, toB)
        #expect(Ports.receive(b) == toB)
    }

    @Test("GHT-NET-04: a burst into a port with little room queues the frames that fit, in order, and drops the rest one by one, counted at the receiving port; taken slots are reused, full-size frames too")
    func burstIntoFullPort() {
        let networkSwitch = NetworkSwitch(portQueueLimit: 8)
        let a = NetworkDevice(switch: networkSwitch), b = NetworkDevice(switch: networkSwitch)
        let frames = (0..<20).map { Ports.frame(to: b.mac, from: a.mac, fill: UInt8($0)) }
        sendBurst(a, Array(frames[0..<5]))
        sendBurst(a, Array(frames[5..<20]))
        #expect(b.statistics.droppedQueueFull == 12)
        #expect(a.statistics.framesSent == 20)
        #expect(Ports.receive(b) == Array(frames[0..<8]))
        // The slots are reused once taken, a full-size frame as well as a short one.
        let big = b.mac.array + a.mac.array + [0x88, 0xb5] + [UInt8](repeating: 0xEE, count: NetworkSwitch.maxFrameSize - 14)
        sendBurst(a, Array(repeating: big, count: 9))
        #expect(Ports.receive(b) == Array(repeating: big, count: 8))
        #expect(b.statistics.droppedQueueFull == 13)
    }
}

@Suite("virtio-net traffic source")
struct NetworkSourceTests {
    @Test("GHT-NET-10: with a traffic source, every receive buffer gets a frame of the set length from the source address to the port's; without one, none")
    func sourceFillsEveryBuffer() {
        for length in [64, 1518] {
            let networkSwitch = NetworkSwitch(portQueueLimit: 8, sourceFrameLength: length)
            let port = NetworkDevice(switch: networkSwitch)
            #expect(port.readyBuffers(queue: NetworkDevice.receiveQueue) == nil)
            let size = NetworkHeader.byteCount + NetworkSwitch.maxFrameSize, count = 12
            let memory = GuestMemoryRegion(size: count * size)
            memory.write([UInt8](repeating: 0xFF, count: count * size), at: 0)
            var batch = RequestBatch.testing(fragments: (0..<count).map { memory.range.slice(offset: $0 * size, length: size) },
                                             requests: (0..<count).map { ($0..<$0, $0..<($0 + 1)) })
            port.process(queue: NetworkDevice.receiveQueue, batch: &batch)
            let expected = port.mac.array + NetworkSwitch.sourceAddress.array + [0x88, 0xB5] + [UInt8](repeating: 0, count: length - 14)
            for i in 0..<count {
                #expect(batch.usedLength(i) == UInt32(NetworkHeader.byteCount + length))
                #expect(memory.read(at: UInt64(i * size + NetworkHeader.byteCount), count: length) == expected)
            }
            #expect(port.statistics.framesReceived == UInt64(count))
        }
        let plain = NetworkDevice(switch: NetworkSwitch())
        #expect(plain.readyBuffers(queue: NetworkDevice.receiveQueue) == 0)
    }
}
