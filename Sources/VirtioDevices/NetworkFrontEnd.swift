import VirtioCore
import VirtioTransport

/// A virtio-net driver over a ``FrontEnd``: keeps receive buffers posted on queue 0, sends
/// frames on queue 1, each behind the 12-byte header (VIRTIO 1.2 §5.1.6). What
/// `virtio-grant net-peer` and the switch tests use as a second guest beside a real one.
public final class NetworkFrontEnd {
    public let frontEnd: FrontEnd
    /// The address the device offers in its configuration space.
    public let mac: EthernetAddress
    private let bufferSize: Int

    /// Connects to a network back-end at `socketPath` and posts `receiveBuffers` buffers.
    public init(socketPath: String, configuration: FrontEndConfiguration = FrontEndConfiguration(),
                receiveBuffers: Int = 64) throws(FrontEndError) {
        var configuration = configuration
        configuration.queueCount = 2
        configuration.deviceFeatures.formUnion([.networkMAC, .networkStatus])
        configuration.maxOutstanding = receiveBuffers
        configuration.maxRequestSize = 4096
        configuration.maxReplySize = 4096
        frontEnd = try FrontEnd.connect(socketPath: socketPath, configuration: configuration)
        bufferSize = NetworkHeader.byteCount + NetworkSwitch.maxFrameSize
        let config = try frontEnd.readConfig(size: NetworkConfigurationSpace.byteCount)
        guard let mac = EthernetAddress(config) else { throw .protocolViolation("virtio-net configuration space too short") }
        self.mac = mac
        let rx = frontEnd.queues[NetworkDevice.receiveQueue]
        for _ in 0..<receiveBuffers { try rx.submit([], replyCapacity: bufferSize) }
        try rx.publish()
    }

    /// Sends one frame (Ethernet header first) and waits until the device took it.
    public func send(_ frame: [UInt8]) throws(FrontEndError) {
        let tx = frontEnd.queues[NetworkDevice.transmitQueue]
        try tx.submit([UInt8](repeating: 0, count: NetworkHeader.byteCount) + frame, replyCapacity: 0)
        try tx.publish()
        _ = try tx.waitForCompletions()
    }

    /// The frames received within `timeoutMilliseconds` (none when the time ran out); each
    /// buffer is posted again at once.
    public func receive(timeoutMilliseconds: Int32) throws(FrontEndError) -> [[UInt8]] {
        let rx = frontEnd.queues[NetworkDevice.receiveQueue]
        var frames: [[UInt8]] = []
        var used = 0
        do {
            used = try rx.waitForCompletions(timeoutMilliseconds: timeoutMilliseconds) { _, reply in
                // A buffer completed empty carried a frame that did not fit: nothing to show.
                if reply.count > NetworkHeader.byteCount { frames.append(Array(reply[NetworkHeader.byteCount...])) }
            }
        } catch {
            guard case .timedOut = error else { throw error }
            return []
        }
        for _ in 0..<used { try rx.submit([], replyCapacity: bufferSize) }
        try rx.publish()
        return frames
    }

    public func close() { frontEnd.close() }
}
