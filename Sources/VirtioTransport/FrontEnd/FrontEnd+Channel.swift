#if canImport(Glibc)
import Glibc
#endif
import VirtioCore
import VirtioGrants

extension FrontEnd {
    /// Sends `message` and waits for its reply, if it has one; with REPLY_ACK negotiated every
    /// request asks for an acknowledgement, so a refusal is seen at once.
    @discardableResult
    func request(_ message: VhostUserMessage, fds: [Int32] = []) throws(FrontEndError) -> VhostUserReply? {
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
        } catch where error.errno == ETIMEDOUT {
            abandon()   // part of the message may be out: the stream has lost its framing
            throw .timedOut("sending \(request)")
        } catch {
            throw .disconnected
        }
        guard request.alwaysReplies || wantsAck else { return nil }
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
        return reply
    }

    /// Allocates `count` pages of the pool; in grant mode grants them to the back-end (consecutive
    /// references, H5) with `readOnly` access.
    func allocate(pages count: Int, readOnly: Bool) throws(FrontEndError) -> PoolRun {
        guard let first = pages.allocate(count) else { throw .exhausted("no \(count) free pages in the pool") }
        var reference: GrantReference?
        if let grants {
            do {
                reference = try grants.grant(frames: (first..<(first + count)).map { UInt32($0) }, to: configuration.backEndDomain,
                                             readOnly: readOnly)
            } catch {
                pages.free(first, count)
                throw .grant(error)
            }
            grantedRuns.append((reference!, count))
            grantsMade += count
        }
        return PoolRun(firstPage: first, pageCount: count, firstReference: reference,
                       host: pool.range.slice(offset: first * GrantHandle.pageSize, length: count * GrantHandle.pageSize))
    }

    /// Drops the connection without talking to the back-end again (it broke the protocol).
    /// Grants stay granted: a back-end that may still hold mappings cannot be trusted to
    /// release them, so their pages are not reused.
    func abandon() {
        closed = true
        channel.socket.close()
    }

    /// Ends the connection cleanly: resets the device (so the back-end drops every mapping),
    /// ends every grant — asking the back-end to revoke what it still holds — and closes.
    public func close() {
        guard !closed else { return }
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
    }

}

/// A run of pages of the pool: where they are for the front-end and how the device names them.
struct PoolRun {
    let firstPage: Int
    let pageCount: Int
    /// The grant reference of the first page (grant mode).
    let firstReference: GrantReference?
    let host: HostRange

    /// The device-visible address of byte `offset` of the run.
    func deviceAddress(_ offset: Int) -> UInt64 {
        precondition(offset >= 0 && offset <= pageCount * GrantHandle.pageSize)
        if let firstReference {
            return GrantHandle(reference: firstReference.advanced(by: offset / GrantHandle.pageSize), offset: offset % GrantHandle.pageSize).rawValue
        }
        return UInt64(firstPage * GrantHandle.pageSize + offset)
    }

    /// The front-end's (user) address of byte `offset`, for vhost-user ring addresses in
    /// guest-physical mode.
    func userAddress(_ offset: Int) -> UInt64 { UInt64(host.startAddress) + UInt64(offset) }
}
