import VirtioSystem
import VhostUser
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
        /// A deadline passed (``receive(deadline:messageTimeoutMilliseconds:)``): before the
        /// message began, or, with `midMessage`, after its first byte and before its last.
        case timedOut(midMessage: Bool)
    }

    /// Reads the next message, blocking.
    public func receive() throws(ReceiveError) -> Received {
        try receive(deadline: nil, messageTimeoutMilliseconds: nil)
    }

    /// Reads the next message before `deadline` (none: wait for it forever), and once its first
    /// byte is in, the rest within `messageTimeoutMilliseconds` (none: within the deadline only).
    ///
    /// Each read is preceded by a `poll` for what is left of the nearer bound, so a peer that
    /// trickles one byte at a time cannot stretch the wait (GHT-LIVE-02, GHT-LIVE-06). The
    /// connection is unusable after a mid-message timeout (the stream lost its framing).
    func receive(deadline: Timeout?, messageTimeoutMilliseconds: Int32?) throws(ReceiveError) -> Received {
        var owned: [FileDescriptor] = []
        var messageDeadline: Timeout?
        while true {
            if !framer.isAtMessageBoundary, messageDeadline == nil, let ms = messageTimeoutMilliseconds {
                messageDeadline = Timeout(milliseconds: ms)
            }
            if let wait = Self.nearer(deadline, messageDeadline) {
                let ready: Bool
                do { ready = try socket.waitReadable(timeoutMilliseconds: wait) } catch { throw .socket(.system(error)) }
                if !ready { throw .timedOut(midMessage: !framer.isAtMessageBoundary) }
            }
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

    /// The milliseconds left of the nearer of two deadlines, or nil when there is none (a
    /// timeout without a deadline reports -1).
    private static func nearer(_ a: Timeout?, _ b: Timeout?) -> Int32? {
        let left = { (t: Timeout?) in t.map { $0.remainingMilliseconds() }.flatMap { $0 < 0 ? nil : $0 } }
        switch (left(a), left(b)) {
        case (nil, nil): return nil
        case (let x?, nil): return x
        case (nil, let y?): return y
        case (let x?, let y?): return min(x, y)
        }
    }

    /// Sends `bytes` (a whole encoded message) with `fds`.
    public func send(_ bytes: [UInt8], fds: [Int32] = []) throws(SystemError) {
        try socket.send(bytes, fds: fds)
    }

    /// Sends `bytes` with `fds`, all of it within `timeoutMilliseconds` (`ETIMEDOUT` otherwise,
    /// after which the connection must be closed: part of the message may be out).
    public func send(_ bytes: [UInt8], fds: [Int32] = [], timeoutMilliseconds: Int32) throws(SystemError) {
        try socket.send(bytes, fds: fds, timeoutMilliseconds: timeoutMilliseconds)
    }
}
