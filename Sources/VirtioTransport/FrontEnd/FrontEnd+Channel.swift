import VirtioCore
import VirtioGrants
import VirtioSystem
import VhostUser

extension FrontEnd {
    /// Sends `message` and waits for its reply, if it has one; with REPLY_ACK negotiated every
    /// request asks for an acknowledgement, so a refusal is seen at once.
    /// With a reconnect policy, a request that finds the back-end gone is sent again to the
    /// back-end restarted at the same path, once the setup was replayed (GHT-RCN-01).
    @discardableResult
    func request(_ message: VhostUserMessage, fds: [Int32] = []) throws(FrontEndError) -> VhostUserReply? {
        let generation = connectionGeneration.load(ordering: .acquiring)
        let recoverable = !closed && resumable && !replaying && configuration.reconnect != nil
        do {
            return try exchange(message, fds: fds).reply
        } catch .disconnected where recoverable {
            try recover(after: generation)
            return try exchange(message, fds: fds).reply
        }
    }

    /// ``request(_:fds:)`` without recovery, also returning the descriptors the reply carried
    /// (GET_INFLIGHT_FD's area; the codec allows none with any other reply).
    func exchange(_ message: VhostUserMessage, fds: [Int32] = []) throws(FrontEndError) -> (reply: VhostUserReply?, fds: [FileDescriptor]) {
        guard !closed else { throw .disconnected }
        let request = message.request
        let wantsAck = !request.alwaysReplies && protocolFeatures.contains(.replyAck)
        let bytes: [UInt8]
        do {
            bytes = try VhostUserCodec.encode(message, needReply: wantsAck)
        } catch {
            throw .protocolViolation("cannot encode \(request): \(error)")
        }
        // GHT-LIVE-06: the timeout bounds the whole send and the whole reply, not each system
        // call, so a back-end that reads or writes one byte at a time cannot hold the caller.
        let timeout = configuration.timeoutMilliseconds
        do {
            try channel.send(bytes, fds: fds, timeoutMilliseconds: timeout > 0 ? timeout : -1)
        } catch where error.isTimedOut {
            abandon()   // part of the message may be out: the stream has lost its framing
            throw .timedOut("sending \(request)")
        } catch {
            throw .disconnected
        }
        guard request.alwaysReplies || wantsAck else { return (nil, []) }
        let received: VhostUserChannel.Received
        do {
            received = try channel.receive(deadline: timeout > 0 ? Timeout(milliseconds: timeout) : nil, messageTimeoutMilliseconds: nil)
        } catch {
            switch error {
            case .closed: throw .disconnected
            case .timedOut(let midMessage):
                if midMessage { abandon() }
                throw .timedOut("reply to \(request)")
            case .socket(.timedOut): throw .timedOut("reply to \(request)")
            case .socket(let e): throw .socket(e)
            case .protocolViolation(let e):
                abandon()
                throw .protocolViolation("\(e)")
            }
        }
        let reply: VhostUserReply
        do {
            reply = try VhostUserCodec.decodeReply(header: received.frame.header, payload: received.frame.payload,
                                                   fileDescriptorCount: received.fds.count, answering: message)
        } catch {
            abandon()   // GHT-VU-21: a bad reply ends the connection on this side too
            throw .protocolViolation("reply to \(request): \(error)")
        }
        if case .ack(_, let ack) = reply, !ack.isSuccess { throw .refused(request) }
        return (reply, received.fds)
    }

    /// Drops the connection without talking to the back-end again (it broke the protocol).
    /// Grants stay granted: a back-end that may still hold mappings cannot be trusted to
    /// release them, so their pages are not reused.
    func abandon() {
        closed = true
        channel.socket.close()
        pool.scrub()   // GHT-HBE-04: nothing of the guest's stays where the back-end can read it
    }

    /// Ends the connection cleanly: resets the device (so the back-end drops every mapping),
    /// ends every grant — asking the back-end to revoke what it still holds — and closes.
    public func close() {
        guard !closed else { return }
        resumable = false   // a back-end gone now is not reconnected to only to be closed
        _ = try? setStatus([])
        if let grants {
            for (first, count) in grantedRuns {
                var busy: [GrantReference] = []
                for k in 0..<count {
                    let ref = first.advanced(by: k)
                    if (try? grants.endAccess(ref)) == .ended { grantsEnded += 1 } else { busy.append(ref) }
                }
                if !busy.isEmpty, (try? request(.revokeGrants(VhostUserGrantRange(first: first, count: UInt32(count))))) != nil {
                    for ref in busy where (try? grants.endAccess(ref)) == .ended { grantsEnded += 1 }
                }
            }
            grantedRuns.removeAll()
        }
        closed = true
        channel.socket.close()
        pool.scrub()   // GHT-HBE-04
    }

}
