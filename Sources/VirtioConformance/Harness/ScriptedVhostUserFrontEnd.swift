import VirtioCore
import VirtioGrants
import VirtioTransport

import VirtioSystem
import VhostUser

/// A scripted vhost-user front-end: it sends well-formed messages through the codec, or any
/// bytes and descriptors it is told to, and reads the back-end's replies. It is what a buggy or
/// hostile front-end looks like to a back-end's session, and works against any vhost-user
/// back-end listening on a unix socket (`vhost-user.md`; the grant-table extension of §4).
public final class ScriptedVhostUserFrontEnd {
    public let channel: VhostUserChannel
    /// The memory a client shares: one memfd pool, and a grant table.
    public let pool: SharedMemory
    public let table: SharedMemory

    /// Connects to the back-end at `path` and creates the memory it can share: sealed memfds,
    /// or with `sealed: false` files whose size the client can change under the back-end (what
    /// DPDK's virtio-user and UML send; ``truncate(_:toPages:)``).
    public init(path: String, poolPages: Int = 64, sealed: Bool = true) throws {
        let socket = try UnixSocket.connect(path: path)
        try socket.setReceiveTimeout(milliseconds: 3000)
        channel = VhostUserChannel(socket: socket)
        pool = sealed ? try SharedMemory.create(name: "raw-pool", size: poolPages * 4096)
                      : try SharedMemory.createUnsealed(name: "raw-pool", size: poolPages * 4096)
        table = sealed ? try SharedMemory.create(name: "raw-table", size: 4096) : try SharedMemory.createUnsealed(name: "raw-table", size: 4096)
    }

    /// Shrinks (or grows) the file behind `memory`, one of this client's unsealed files, to
    /// `pages` pages: a hostile front-end pulling memory from under the back-end's mapping.
    /// The client's own mapping of the lost pages must not be touched afterwards.
    public func truncate(_ memory: SharedMemory, toPages pages: Int) throws {
        try memory.fd.truncate(to: pages * 4096)
    }

    public func send(_ message: VhostUserMessage, needReply: Bool = false, fds: [Int32] = []) throws {
        try channel.send(try VhostUserCodec.encode(message, needReply: needReply), fds: fds)
    }

    /// A message with any request number, flags and payload.
    public func sendRaw(request: UInt32, payload: [UInt8], needReply: Bool = false, fds: [Int32] = []) throws {
        try channel.send(VhostUserHeader.request(request, payloadSize: payload.count, needReply: needReply).encoded() + payload, fds: fds)
    }

    /// The reply to `message`.
    public func reply(to message: VhostUserMessage) throws -> VhostUserReply {
        let received = try channel.receive()
        return try VhostUserCodec.decodeReply(header: received.frame.header, payload: received.frame.payload,
                                              fileDescriptorCount: received.fds.count, answering: message)
    }

    /// Sends `message` asking for an acknowledgement and returns it.
    public func ack(_ message: VhostUserMessage, fds: [Int32] = []) throws -> VhostUserAck {
        try send(message, needReply: true, fds: fds)
        guard case .ack(_, let ack) = try reply(to: message) else { throw Unexpected("no ack for \(message.request)") }
        return ack
    }

    /// The u64 reply of a request that always answers with one (REVOKE_GRANTS, IOTLB_MSG, SET_LOG_BASE).
    public func u64Reply(request: UInt32) throws -> UInt64 {
        let received = try channel.receive()
        guard received.frame.header.request == request, received.frame.header.isReply else {
            throw Unexpected("a message other than the reply to request \(request)")
        }
        guard received.frame.payload.count == 8 else { throw Unexpected("reply of \(received.frame.payload.count) bytes") }
        return received.frame.payload.reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
    }

    /// Whether the back-end closed the connection (rather than answering or staying silent).
    public func isClosedByPeer() -> Bool {
        while true {
            do {
                _ = try channel.receive()   // drain replies already queued
            } catch {
                if case .closed = error { return true }
                if case .socket(let e) = error, case .system(let s) = e, s.isConnectionReset { return true }
                return false
            }
        }
    }

    /// GET_FEATURES, SET_PROTOCOL_FEATURES, SET_OWNER: what every front-end does first.
    @discardableResult
    public func negotiate(_ protocolFeatures: VhostUserProtocolFeatures = [.replyAck, .status, .config, .grantTable, .configureMemorySlots,
                                                                     .backendRequest]) throws -> VirtioFeatures {
        try send(.getFeatures)
        guard case .features(let offered) = try reply(to: .getFeatures) else { throw Unexpected("GET_FEATURES") }
        try send(.setProtocolFeatures(protocolFeatures))
        guard try ack(.setOwner).isSuccess else { throw Unexpected("SET_OWNER refused") }
        return offered
    }

    /// Shares the pool as guest-physical 0..<size at its own user address.
    public func shareMemory() throws {
        let region = VhostUserMemoryRegion(guestAddress: 0, size: UInt64(pool.size), userAddress: UInt64(pool.range.startAddress), mmapOffset: 0)
        guard try ack(.setMemoryTable(VhostUserMemoryTable(regions: [region])), fds: [pool.fd.rawValue]).isSuccess else {
            throw Unexpected("SET_MEM_TABLE refused")
        }
    }

    /// A grant-table description of this client's table and pool.
    public func grantTableInfo(framesGuestAddress: UInt64 = 0, frameCount: UInt64? = nil) -> VhostUserGrantTable {
        VhostUserGrantTable(granter: DomainID(1), grantee: DomainID(0), tableSize: UInt64(table.size), tableOffset: 0,
                            framesGuestAddress: framesGuestAddress, frameCount: frameCount ?? UInt64(pool.size / 4096))
    }

    public func close() { channel.socket.close() }

    /// The back-end answered something the script did not expect.
    public struct Unexpected: Error, CustomStringConvertible {
        public let description: String
        public init(_ d: String) { description = d }
    }
}
