import Testing
import VirtioCore
import VirtioDevices
import VirtioTransport

/// Drives ports of a switch directly through their queues' batches (no session).
struct Ports {
    /// Transmits `frame` from `device` (behind a zero virtio-net header).
    static func send(_ device: NetworkDevice, _ frame: [UInt8]) {
        let memory = GuestMemoryRegion(size: 4096)
        memory.write([UInt8](repeating: 0, count: NetworkHeader.byteCount) + frame, at: 0)
        var batch = RequestBatch.testing(fragments: [memory.range.slice(offset: 0, length: NetworkHeader.byteCount + frame.count)],
                                         requests: [(0..<1, 1..<1)])
        withExtendedLifetime(memory) { device.process(queue: NetworkDevice.transmitQueue, batch: &batch) }
    }

    /// The frames waiting for `device`'s guest, taken into receive buffers.
    static func receive(_ device: NetworkDevice) -> [[UInt8]] {
        let count = device.readyBuffers(queue: NetworkDevice.receiveQueue) ?? 0
        guard count > 0 else { return [] }
        let size = NetworkHeader.byteCount + NetworkSwitch.maxFrameSize
        let memory = GuestMemoryRegion(size: count * size)
        let fragments = (0..<count).map { memory.range.slice(offset: $0 * size, length: size) }
        var batch = RequestBatch.testing(fragments: fragments, requests: (0..<count).map { ($0..<$0, $0..<($0 + 1)) })
        device.process(queue: NetworkDevice.receiveQueue, batch: &batch)
        return (0..<count).map { i in
            let used = Int(batch.usedLength(i))
            return used > NetworkHeader.byteCount ? memory.read(at: UInt64(i * size + NetworkHeader.byteCount), count: used - NetworkHeader.byteCount) : []
        }
    }

    static func frame(to destination: EthernetAddress, from source: EthernetAddress, fill: UInt8 = 0x33) -> [UInt8] {
        destination.array + source.array + [0x88, 0xb5] + [UInt8](repeating: fill, count: 46)
    }
}

@Suite("Isolation between the ports of the switch")
struct SwitchIsolationTests {
    @Test("GHT-ISO-01: every port gets an address of its own, past 256 ports too; an address another port owns is never given twice")
    func uniqueAddresses() {
        let networkSwitch = NetworkSwitch()
        let devices = (0..<300).map { _ in NetworkDevice(switch: networkSwitch) }
        #expect(Set(devices.map(\.mac)).count == 300, "port 257 does not get port 1's address")
        #expect(devices.allSatisfy { $0.isAttached })
        let copycat = NetworkDevice(switch: networkSwitch, mac: devices[0].mac)
        #expect(!copycat.isAttached, "the address is taken: the device is not attached")
        let config = copycat.readConfig()
        #expect(config[6] == 0 && config[7] == 0, "its link is down")
        Ports.send(copycat, Ports.frame(to: .broadcast, from: devices[0].mac))
        #expect(copycat.statistics.droppedUnplugged == 1)
        #expect(Ports.receive(devices[1]).isEmpty)
    }

    @Test("GHT-ISO-01, GHT-LIM-65: a switch attaches at most maxPorts ports; a device beyond is unplugged; a detached port's number and address are reused")
    func portBound() {
        let networkSwitch = NetworkSwitch(maxPorts: 3)
        var devices: [NetworkDevice?] = (0..<3).map { _ in NetworkDevice(switch: networkSwitch) }
        let extra = NetworkDevice(switch: networkSwitch)
        #expect(!extra.isAttached && networkSwitch.portCount == 3)
        let freed = devices[1]!.port
        devices[1] = nil
        let next = NetworkDevice(switch: networkSwitch)
        #expect(next.isAttached && next.port == freed && next.mac == NetworkSwitch.defaultAddress(port: freed))
        withExtendedLifetime(devices) {}
    }

    @Test("GHT-ISO-02: a locked port's frame from another port's address is dropped and counted; that address still draws its own traffic")
    func lockedPorts() {
        let networkSwitch = NetworkSwitch(stickyAddresses: false)
        let a = NetworkDevice(switch: networkSwitch), b = NetworkDevice(switch: networkSwitch), c = NetworkDevice(switch: networkSwitch)
        Ports.send(a, Ports.frame(to: .broadcast, from: b.mac))
        Ports.send(a, Ports.frame(to: .broadcast, from: EthernetAddress(0x02, 0, 0, 0, 0, 1)))
        #expect(a.statistics.droppedSpoofed == 2 && a.statistics.framesSent == 0)
        #expect(Ports.receive(b).isEmpty && Ports.receive(c).isEmpty)
        Ports.send(c, Ports.frame(to: b.mac, from: c.mac, fill: 7))
        #expect(Ports.receive(b).map { $0[20] } == [7], "b's address did not move to a")
        #expect(Ports.receive(a).isEmpty)
    }

    @Test("GHT-ISO-05: a port on its default address adopts the first unicast source it sends from that no port owns, then is locked to it; never a group or another port's address")
    func stickyAddresses() {
        let networkSwitch = NetworkSwitch()
        let a = NetworkDevice(switch: networkSwitch), b = NetworkDevice(switch: networkSwitch), c = NetworkDevice(switch: networkSwitch)
        let qemu = EthernetAddress(0x52, 0x54, 0x00, 0x12, 0x34, 0x56)   // what QEMU gives a guest by default
        Ports.send(a, Ports.frame(to: .broadcast, from: b.mac))
        Ports.send(a, Ports.frame(to: .broadcast, from: EthernetAddress(0x01, 0, 0x5E, 0, 0, 1)))
        #expect(a.statistics.droppedSpoofed == 2, "another port's address and a group address are never adopted")
        Ports.send(a, Ports.frame(to: .broadcast, from: qemu))
        #expect(a.statistics.framesSent == 1 && Ports.receive(b).count == 1 && Ports.receive(c).count == 1)
        Ports.send(c, Ports.frame(to: qemu, from: c.mac, fill: 5))
        #expect(Ports.receive(a).map { $0[20] } == [5], "the adopted address draws its traffic")
        #expect(Ports.receive(b).isEmpty)
        Ports.send(a, Ports.frame(to: .broadcast, from: EthernetAddress(0x52, 0x54, 0x00, 0x12, 0x34, 0x57)))
        #expect(a.statistics.droppedSpoofed == 3, "locked to the adopted address from then on")
        Ports.send(b, Ports.frame(to: .broadcast, from: qemu))
        #expect(b.statistics.droppedSpoofed == 1, "nobody else may take it")
        // A port that first sends from the address it was given is locked to that one.
        Ports.send(c, Ports.frame(to: .broadcast, from: EthernetAddress(0x52, 0x54, 0x00, 0x12, 0x34, 0x58)))
        #expect(c.statistics.droppedSpoofed == 1)
    }

    @Test("GHT-ISO-02: an unlocked port may send from other addresses, never from another port's own")
    func unlockedPortsKeepOwners() {
        let networkSwitch = NetworkSwitch(lockedPorts: false)
        let a = NetworkDevice(switch: networkSwitch), b = NetworkDevice(switch: networkSwitch)
        Ports.send(a, Ports.frame(to: .broadcast, from: b.mac))
        #expect(a.statistics.droppedSpoofed == 1 && Ports.receive(b).isEmpty)
        let behindA = EthernetAddress(0x02, 0, 0, 0, 0, 9)
        Ports.send(a, Ports.frame(to: .broadcast, from: behindA))
        #expect(a.statistics.framesSent == 1 && Ports.receive(b).count == 1)
        #expect(networkSwitch.learnedAddressCount == 1)
        Ports.send(b, Ports.frame(to: a.mac, from: b.mac))
        #expect(Ports.receive(a).count == 1)
    }

    @Test("GHT-ISO-03, GHT-LIM-66: a port holds at most floodBudget flooded frames of one other port; a flooding guest leaves room for the others' frames")
    func floodBudget() {
        let networkSwitch = NetworkSwitch(portQueueLimit: 256, floodBudget: 64)
        let flooder = NetworkDevice(switch: networkSwitch), polite = NetworkDevice(switch: networkSwitch)
        let victim = NetworkDevice(switch: networkSwitch)
        for i in 0..<300 { Ports.send(flooder, Ports.frame(to: .broadcast, from: flooder.mac, fill: UInt8(truncatingIfNeeded: i))) }
        #expect(victim.readyBuffers(queue: NetworkDevice.receiveQueue) == 64)
        #expect(victim.statistics.droppedFloodBudget == 300 - 64)
        for _ in 0..<10 { Ports.send(polite, Ports.frame(to: victim.mac, from: polite.mac, fill: 0xAA)) }
        #expect(victim.statistics.droppedQueueFull == 0)
        let frames = Ports.receive(victim)
        #expect(frames.count == 74 && frames.filter { $0[20] == 0xAA }.count == 10, "the polite guest's frames all arrived")
        // Taken frames free the budget again.
        Ports.send(flooder, Ports.frame(to: .broadcast, from: flooder.mac))
        #expect(victim.readyBuffers(queue: NetworkDevice.receiveQueue) == 1)
        withExtendedLifetime(polite) {}
    }
}
