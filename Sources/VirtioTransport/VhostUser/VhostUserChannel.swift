/// A vhost-user connection's message stream over a unix socket: reads exactly one message at a
/// time (header, then payload, file descriptors with its first byte) through the framer, and
/// writes whole messages.
///
/// Received descriptors are owned: a frame's `fds` close when the caller drops them, and
/// descriptors that arrived with a message the framer refused are closed at once (never leaked).
public final class VhostUserChannel: @unchecked Sendable {
    public let socket: UnixSocket
    private var framer = VhostUserFramer()
    private let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: VhostUserHeader.byteCount + VhostUserHeader.maximumPayloadSize,
                                                                alignment: 8)

    public init(socket: UnixSocket) { self.socket = socket }

    deinit { buffer.deallocate() }

    /// One complete message and the descriptors it carried.
    public struct Received {
        public var frame: VhostUserFrame
        public var fds: [FileDescriptor]
    }

    /// Why reading a message failed.
    public enum ReceiveError: Error {
        /// The peer closed the connection at a message boundary.
        case closed
        /// The bytes broke the protocol (or the connection ended mid-message).
        case protocolViolation(VhostUserProtocolError)
        case socket(UnixSocketError)
    }

    /// Reads the next message, blocking.
    public func receive() throws(ReceiveError) -> Received {
        var owned: [FileDescriptor] = []
        while true {
            let want = framer.nextReadLength
            let (count, fds): (Int, [FileDescriptor])
            do {
                (count, fds) = try socket.receive(into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<want]),
                                                  maxFileDescriptors: framer.isAtMessageBoundary ? VhostUserHeader.maximumFileDescriptors : 0)
            } catch {
                throw .socket(error)
            }
            owned += fds
            if count == 0 {
                if framer.isAtMessageBoundary && owned.isEmpty { throw .closed }
                do { try framer.finish() } catch { throw .protocolViolation(error) }
                throw .closed
            }
            let frames: [VhostUserFrame]
            do {
                frames = try framer.feed(UnsafeRawBufferPointer(rebasing: buffer[0..<count]), fileDescriptors: fds.map(\.rawValue))
            } catch {
                _ = framer.takeFileDescriptors()   // the owned objects close them
                throw .protocolViolation(error)
            }
            if let frame = frames.first {
                // Reading nextReadLength at a time yields at most one frame per read.
                return Received(frame: frame, fds: owned)
            }
        }
    }

    /// Sends `bytes` (a whole encoded message) with `fds`.
    public func send(_ bytes: [UInt8], fds: [Int32] = []) throws(SystemError) {
        try socket.send(bytes, fds: fds)
    }
}
