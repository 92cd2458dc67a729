/// One complete message cut from a vhost-user stream: its header (already checked by
/// ``VhostUserHeader/decode(_:)``), its payload, and the file descriptors that came with it.
public struct VhostUserFrame: Hashable, Sendable {
    public var header: VhostUserHeader
    public var payload: [UInt8]
    /// Opaque descriptor values; the frame's receiver owns them (and closes them if it refuses
    /// the message).
    public var fileDescriptors: [Int32]

    @inlinable
    public init(header: VhostUserHeader, payload: [UInt8], fileDescriptors: [Int32] = []) {
        self.header = header
        self.payload = payload
        self.fileDescriptors = fileDescriptors
    }
}

/// Cuts a vhost-user byte stream into messages (GHT-VU-19), without a system call: the caller
/// reads from the socket (`recvmsg`) and feeds each chunk with the descriptors that came with it.
///
/// On a stream socket, SCM_RIGHTS descriptors arrive with the first byte of the `sendmsg` that
/// carried them, and a sender puts a message's descriptors on its header. The framer therefore
/// accepts descriptors only with a chunk that starts at a message boundary, and gives them to
/// the message that starts there. Descriptors that arrive with a chunk that starts inside a
/// message, or with no bytes, are an error. To make that attribution exact, the caller should
/// read at most ``nextReadLength`` bytes at a time, which never crosses a message boundary;
/// a larger read works for messages without descriptors but may see a later message's
/// descriptors attached mid-message, and fail.
///
/// Bounds: a header announcing more than ``VhostUserHeader/maximumPayloadSize`` bytes is refused
/// as soon as its 12 bytes are in, before any payload byte is buffered; the framer never holds
/// more than one partial message (12 + 4096 bytes) and ``VhostUserHeader/maximumFileDescriptors``
/// descriptors of it. Frames completed by a chunk are returned to the caller and not kept.
///
/// Every descriptor passed to ``feed(_:fileDescriptors:)`` is either returned in a frame or
/// kept until ``takeFileDescriptors()`` hands it back. After an error the framer stays failed:
/// every later call throws the same error, and the caller closes the connection and the
/// descriptors ``takeFileDescriptors()`` returns.
public struct VhostUserFramer: Sendable {
    private var headerBytes: [UInt8] = []
    private var header: VhostUserHeader?
    private var payload: [UInt8] = []
    /// Descriptors of the message being assembled.
    private var messageDescriptors: [Int32] = []
    /// Descriptors owned but no longer attributable (after a failure).
    private var heldDescriptors: [Int32] = []
    private var failure: VhostUserProtocolError?

    public init() {}

    /// True if no byte of a message is buffered.
    public var isAtMessageBoundary: Bool { headerBytes.isEmpty && header == nil }

    /// The bytes left in the current message: the rest of the header, or the rest of the payload
    /// once the header is in. Always at least 1.
    public var nextReadLength: Int {
        if let header { return Int(header.payloadSize) - payload.count }
        return VhostUserHeader.byteCount - headerBytes.count
    }

    /// Bytes of the partial message held.
    public var bufferedByteCount: Int { headerBytes.count + payload.count }

    /// The error the framer failed with, if it did.
    public var error: VhostUserProtocolError? { failure }

    /// Adds a chunk and the descriptors received with it; returns the messages it completes,
    /// in order. Throws on an oversized or malformed header (GHT-VU-01…04), on misplaced
    /// descriptors, or on more than ``VhostUserHeader/maximumFileDescriptors`` of them; the
    /// frames completed before the error in the same chunk are not returned (the connection is
    /// lost anyway) and their descriptors join ``takeFileDescriptors()``.
    public mutating func feed(_ bytes: some Collection<UInt8>, fileDescriptors: [Int32] = []) throws(VhostUserProtocolError) -> [VhostUserFrame] {
        if let failure {
            heldDescriptors += fileDescriptors
            throw failure
        }
        var frames: [VhostUserFrame] = []
        var unclaimed = fileDescriptors
        do {
            try consume(bytes, &unclaimed, into: &frames)
        } catch {
            fail(error, keeping: unclaimed + frames.flatMap(\.fileDescriptors))
            throw error
        }
        return frames
    }

    /// Ends the stream: throws ``VhostUserProtocolError/truncatedMessage(buffered:)`` if it ended
    /// inside a message (or the framer's earlier error).
    public mutating func finish() throws(VhostUserProtocolError) {
        if let failure { throw failure }
        guard isAtMessageBoundary else {
            let error = VhostUserProtocolError.truncatedMessage(buffered: bufferedByteCount)
            fail(error, keeping: [])
            throw error
        }
    }

    /// Hands back every descriptor the framer holds that no frame returned: those of a partial
    /// message, and after a failure all that were fed since. The caller closes them.
    public mutating func takeFileDescriptors() -> [Int32] {
        defer {
            heldDescriptors = []
            messageDescriptors = []
        }
        return heldDescriptors + messageDescriptors
    }

    private mutating func fail(_ error: VhostUserProtocolError, keeping descriptors: [Int32]) {
        failure = error
        heldDescriptors += messageDescriptors + descriptors
        messageDescriptors = []
        headerBytes = []
        header = nil
        payload = []
    }

    private mutating func consume(_ chunk: some Collection<UInt8>, _ unclaimed: inout [Int32],
                                  into frames: inout [VhostUserFrame]) throws(VhostUserProtocolError) {
        if !unclaimed.isEmpty {
            guard !chunk.isEmpty else { throw .fileDescriptorsWithoutData(count: unclaimed.count) }
            guard isAtMessageBoundary else { throw .fileDescriptorsMidMessage(count: unclaimed.count) }
            guard unclaimed.count <= VhostUserHeader.maximumFileDescriptors else {
                throw .tooManyFileDescriptors(count: unclaimed.count, maximum: VhostUserHeader.maximumFileDescriptors)
            }
            messageDescriptors = unclaimed
            unclaimed = []
        }
        var rest = chunk[...]
        while true {
            if header == nil {
                let part = rest.prefix(VhostUserHeader.byteCount - headerBytes.count)
                headerBytes.append(contentsOf: part)
                rest = rest.dropFirst(part.count)
                guard headerBytes.count == VhostUserHeader.byteCount else { return }
                let decoded = try VhostUserHeader.decode(headerBytes)   // refuses an oversized size here
                header = decoded
                payload.reserveCapacity(Int(decoded.payloadSize))
            }
            guard let current = header else { return }
            let part = rest.prefix(Int(current.payloadSize) - payload.count)
            payload.append(contentsOf: part)
            rest = rest.dropFirst(part.count)
            guard payload.count == Int(current.payloadSize) else { return }
            frames.append(VhostUserFrame(header: current, payload: payload, fileDescriptors: messageDescriptors))
            headerBytes = []
            header = nil
            payload = []
            messageDescriptors = []
            if rest.isEmpty { return }
        }
    }
}
