#if canImport(Glibc)
import Glibc
#endif
import CVirtioShim

// Bytes and descriptors over a Unix socket: sendmsg/recvmsg with SCM_RIGHTS. The descriptors
// travel attached to the first byte of a send; Linux never merges a receive across the start of
// a send that carries descriptors, so they arrive with the first byte of the message they were
// sent with.

extension UnixSocket {
    /// The most descriptors one message may carry (the kernel's `SCM_MAX_FD`).
    public static let maxFileDescriptorsPerMessage = 253

    /// Sends all of `bytes`, with `fds` attached to the first byte.
    ///
    /// The corresponding C call is `sendmsg` with an `SCM_RIGHTS` control message and
    /// `MSG_NOSIGNAL` (a closed peer is the error `EPIPE`, never a `SIGPIPE`). A short send is
    /// continued until every byte is out; the descriptors go with the first `sendmsg` only.
    /// The receiver gets new descriptors for the same open files; `fds` stay open here.
    ///
    /// - Precondition: Descriptors need at least one byte to travel with, and at most
    ///   ``maxFileDescriptorsPerMessage`` fit in one message.
    public func send(_ bytes: UnsafeRawBufferPointer, fds: [Int32] = []) throws(SystemError) {
        precondition(fds.isEmpty || !bytes.isEmpty, "descriptors need at least one byte to travel with")
        precondition(fds.count <= Self.maxFileDescriptorsPerMessage, "too many descriptors for one message")
        guard let base = bytes.baseAddress else { return }
        let raw = fd.rawValue
        var sent = try withRightsControl(fds) { (control) throws(SystemError) in
            try sendOnce(raw, bytes, control: control)
        }
        while sent < bytes.count {
            sent += try sendOnce(raw, UnsafeRawBufferPointer(start: base + sent, count: bytes.count - sent), control: nil)
        }
    }

    /// Sends all of `bytes`, with `fds` attached to the first byte (see ``send(_:fds:)-(UnsafeRawBufferPointer,_)``).
    public func send(_ bytes: some Collection<UInt8>, fds: [Int32] = []) throws(SystemError) {
        var result: Result<Void, SystemError>?
        bytes.withContiguousStorageIfAvailable { buffer in
            result = Result { () throws(SystemError) in try send(UnsafeRawBufferPointer(buffer), fds: fds) }
        }
        if result == nil {
            let copy = Array(bytes)
            result = copy.withUnsafeBytes { buffer in
                Result { () throws(SystemError) in try send(buffer, fds: fds) }
            }
        }
        try result!.get()
    }

    /// Receives up to `buffer.count` bytes and the descriptors sent with them.
    ///
    /// The corresponding C call is `recvmsg` with `MSG_CMSG_CLOEXEC`. Control space is given
    /// for exactly `maxFileDescriptors` descriptors, so a peer cannot make this process hold
    /// more than that. Descriptors are adopted as soon as they arrive; when the call fails,
    /// every one that arrived is closed before the error is thrown, so none ever leaks.
    ///
    /// - Parameters:
    ///   - buffer: Where the bytes go; must not be empty.
    ///   - maxFileDescriptors: The most descriptors accepted with these bytes (0 for none).
    /// - Returns: The number of bytes received (0 when the peer closed or shut down its end)
    ///   and the received descriptors, which the caller now owns.
    /// - Throws: ``UnixSocketError/controlTruncated(bytesReceived:)`` when the peer sent more
    ///   descriptors than allowed, ``UnixSocketError/unexpectedControlMessage(level:type:)``,
    ///   ``UnixSocketError/timedOut`` once a receive timeout passes, or
    ///   ``UnixSocketError/system(_:)``.
    public func receive(
        into buffer: UnsafeMutableRawBufferPointer, maxFileDescriptors: Int = 0
    ) throws(UnixSocketError) -> (count: Int, fds: [FileDescriptor]) {
        precondition(!buffer.isEmpty, "an empty buffer could not tell data from end of stream")
        precondition((0...Self.maxFileDescriptorsPerMessage).contains(maxFileDescriptors))
        let raw = fd.rawValue
        let payload = maxFileDescriptors * MemoryLayout<Int32>.size
        let space = maxFileDescriptors > 0 ? CVirtioShim_CMSG_SPACE(payload) : 0
        return try withUnsafeTemporaryAllocation(
            byteCount: max(space, 1), alignment: MemoryLayout<cmsghdr>.alignment
        ) { (control) throws(UnixSocketError) in
            control.initializeMemory(as: UInt8.self, repeating: 0)
            var vector = iovec(iov_base: buffer.baseAddress, iov_len: buffer.count)
            return try withUnsafeMutablePointer(to: &vector) { (vector) throws(UnixSocketError) in
                var message = msghdr()
                message.msg_iov = vector
                message.msg_iovlen = 1
                if maxFileDescriptors > 0 {
                    message.msg_control = control.baseAddress
                    // CMSG_LEN, not CMSG_SPACE: the kernel fits as many descriptors as the
                    // length allows, and the padding in SPACE could hold one more.
                    message.msg_controllen = CVirtioShim_CMSG_LEN(payload)
                }
                let count: Int
                do throws(SystemError) {
                    count = try valueOrErrno("recvmsg") { recvmsg(raw, &message, Int32(MSG_CMSG_CLOEXEC)) }
                } catch where error.isWouldBlock {
                    throw .timedOut
                } catch {
                    throw .system(error)
                }
                return try Self.collectRights(from: &message, bytesReceived: count, limit: maxFileDescriptors)
            }
        }
    }

    /// Adopts every descriptor in `message`'s control data, then checks that nothing else came
    /// and nothing was cut off; on failure the adopted descriptors are closed.
    private static func collectRights(
        from message: inout msghdr, bytesReceived: Int, limit: Int
    ) throws(UnixSocketError) -> (count: Int, fds: [FileDescriptor]) {
        var fds: [FileDescriptor] = []
        var unexpected: (level: Int32, type: Int32)?
        var header = message.msg_controllen > 0 ? CVirtioShim_CMSG_FIRSTHDR(&message) : nil
        while let current = header {
            if current.pointee.cmsg_level == SOL_SOCKET, current.pointee.cmsg_type == Int32(SCM_RIGHTS) {
                let data = UnsafeRawPointer(CVirtioShim_CMSG_DATA(current)!)
                let length = Int(current.pointee.cmsg_len) - CVirtioShim_CMSG_LEN(0)
                for index in 0..<(length / MemoryLayout<Int32>.size) {
                    let raw = data.loadUnaligned(fromByteOffset: index * MemoryLayout<Int32>.size, as: Int32.self)
                    fds.append(FileDescriptor(adopting: raw))
                }
            } else if unexpected == nil {
                unexpected = (current.pointee.cmsg_level, current.pointee.cmsg_type)
            }
            header = CVirtioShim_CMSG_NXTHDR(&message, current)
        }
        if message.msg_flags & Int32(MSG_CTRUNC) != 0 || fds.count > limit {
            fds.forEach { $0.close() }
            throw .controlTruncated(bytesReceived: bytesReceived)
        }
        if let unexpected {
            fds.forEach { $0.close() }
            throw .unexpectedControlMessage(level: unexpected.level, type: unexpected.type)
        }
        return (bytesReceived, fds)
    }
}

/// Calls `body` with a control buffer holding one `SCM_RIGHTS` message for `fds`, or with
/// `nil` when there are none.
package func withRightsControl<R>(
    _ fds: [Int32], _ body: (UnsafeMutableRawBufferPointer?) throws(SystemError) -> R
) throws(SystemError) -> R {
    if fds.isEmpty { return try body(nil) }
    let payload = fds.count * MemoryLayout<Int32>.size
    return try withUnsafeTemporaryAllocation(
        byteCount: CVirtioShim_CMSG_SPACE(payload), alignment: MemoryLayout<cmsghdr>.alignment
    ) { (control) throws(SystemError) in
        control.initializeMemory(as: UInt8.self, repeating: 0)
        let header = control.baseAddress!.assumingMemoryBound(to: cmsghdr.self)
        header.pointee.cmsg_level = SOL_SOCKET
        header.pointee.cmsg_type = Int32(SCM_RIGHTS)
        header.pointee.cmsg_len = CVirtioShim_CMSG_LEN(payload)
        let data = UnsafeMutableRawPointer(CVirtioShim_CMSG_DATA(header)!)
        fds.withUnsafeBytes { data.copyMemory(from: $0.baseAddress!, byteCount: payload) }
        return try body(control)
    }
}

/// One `sendmsg` (`MSG_NOSIGNAL` by default: a closed peer is `EPIPE`); returns how many bytes went out.
package func sendOnce(
    _ socket: Int32, _ bytes: UnsafeRawBufferPointer, control: UnsafeMutableRawBufferPointer?, flags: Int32 = Int32(MSG_NOSIGNAL)
) throws(SystemError) -> Int {
    var vector = iovec(iov_base: UnsafeMutableRawPointer(mutating: bytes.baseAddress), iov_len: bytes.count)
    return try withUnsafeMutablePointer(to: &vector) { (vector) throws(SystemError) in
        var message = msghdr()
        message.msg_iov = vector
        message.msg_iovlen = 1
        if let control {
            message.msg_control = control.baseAddress
            message.msg_controllen = control.count
        }
        return try valueOrErrno("sendmsg") { sendmsg(socket, &message, flags) }
    }
}
