/// The smallest IPv4 host a network test needs on the far side of a switch: it answers ARP
/// requests for its address (RFC 826) and ICMP echo requests to it (RFC 792), and nothing else.
/// `virtio-grant net-peer` runs one behind a ``FrontEnd``, so that a real guest's `ping` has
/// somebody to talk to through the network back-end.
public struct IPv4Responder: Sendable {
    public let mac: EthernetAddress
    public let address: [UInt8]

    public init(mac: EthernetAddress, address: [UInt8]) {
        precondition(address.count == 4)
        self.mac = mac
        self.address = address
    }

    /// `10.0.2.2`.
    public static func parseAddress(_ text: String) -> [UInt8]? {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false).map { UInt8($0) }
        guard parts.count == 4, parts.allSatisfy({ $0 != nil }) else { return nil }
        return parts.map { $0! }
    }

    /// What a frame asks for.
    public enum Answer: Equatable, Sendable {
        case arpReply([UInt8])
        case echoReply([UInt8])
    }

    /// The reply to `frame` (Ethernet header first), if it is an ARP request for this address
    /// or an ICMP echo request to it. Malformed frames get no reply.
    public func answer(_ frame: [UInt8]) -> Answer? {
        guard frame.count >= 14 else { return nil }
        let type = UInt16(frame[12]) << 8 | UInt16(frame[13])
        switch type {
        case 0x0806: return arpReply(frame).map(Answer.arpReply)
        case 0x0800: return echoReply(frame).map(Answer.echoReply)
        default: return nil
        }
    }

    private func arpReply(_ frame: [UInt8]) -> [UInt8]? {
        let arp = Array(frame[14...])
        // Ethernet/IPv4 ARP: htype 1, ptype 0x0800, hlen 6, plen 4, operation 1 (request).
        guard arp.count >= 28, arp[0...7] == [0, 1, 8, 0, 6, 4, 0, 1], Array(arp[24..<28]) == address else { return nil }
        let requesterMAC = Array(arp[8..<14]), requesterIP = Array(arp[14..<18])
        return requesterMAC + mac.array + [0x08, 0x06] + [0, 1, 8, 0, 6, 4, 0, 2] + mac.array + address + requesterMAC + requesterIP
    }

    private func echoReply(_ frame: [UInt8]) -> [UInt8]? {
        var ip = Array(frame[14...])
        guard ip.count >= 20, ip[0] >> 4 == 4 else { return nil }
        let headerLength = Int(ip[0] & 0x0f) * 4
        let totalLength = Int(ip[2]) << 8 | Int(ip[3])
        guard headerLength >= 20, totalLength >= headerLength + 8, totalLength <= ip.count,
              ip[9] == 1, Array(ip[16..<20]) == address, ip[headerLength] == 8 else { return nil }
        ip = Array(ip[..<totalLength])
        let source = Array(ip[12..<16])
        ip.replaceSubrange(12..<16, with: address)
        ip.replaceSubrange(16..<20, with: source)
        ip[8] = 64
        ip[10] = 0
        ip[11] = 0
        let ipSum = Self.checksum(ip[..<headerLength])
        ip[10] = UInt8(ipSum >> 8)
        ip[11] = UInt8(ipSum & 0xff)
        ip[headerLength] = 0
        ip[headerLength + 2] = 0
        ip[headerLength + 3] = 0
        let icmpSum = Self.checksum(ip[headerLength...])
        ip[headerLength + 2] = UInt8(icmpSum >> 8)
        ip[headerLength + 3] = UInt8(icmpSum & 0xff)
        return Array(frame[6..<12]) + mac.array + [0x08, 0x00] + ip
    }

    /// The Internet checksum (RFC 1071) of `bytes`.
    public static func checksum(_ bytes: ArraySlice<UInt8>) -> UInt16 {
        var sum: UInt32 = 0
        var i = bytes.startIndex
        while i + 1 < bytes.endIndex {
            sum += UInt32(bytes[i]) << 8 | UInt32(bytes[i + 1])
            i += 2
        }
        if i < bytes.endIndex { sum += UInt32(bytes[i]) << 8 }
        while sum >> 16 != 0 { sum = (sum & 0xffff) + (sum >> 16) }
        return ~UInt16(sum)
    }
}
