import Testing
import VirtioConformance
import VirtioCore
import VirtioGrants
import VirtioTransport
import VirtioSystem
import VhostUser

/// `limits.md` §2: what one SET_GRANT_TABLE or REVOKE_GRANTS may cost the back-end.
@Suite("Bounds on the grant table a front-end declares", .tags(.transport))
struct GrantTableLimitTests {
    /// A back-end configured with `configuration`, and a client that negotiated and shared its pool.
    static func connect(_ tag: String, _ configuration: BackEndConfiguration = BackEndConfiguration()) throws
        -> (server: TestBackEnd, client: RawVhostUserClient) {
        let server = try TestBackEnd(tag, configuration: configuration)
        let client = try RawVhostUserClient(path: server.path)
        try client.negotiate()
        try client.shareMemory()
        return (server, client)
    }

    /// Ends the session; the back-end must have kept it until the client closed it.
    static func close(_ session: (server: TestBackEnd, client: RawVhostUserClient)) throws {
        session.client.close()
        #expect(try session.server.report(1).end == .disconnected)
    }

    /// A grant-table description of `entries` entries in `table`, over the client's pool.
    static func info(_ client: RawVhostUserClient, entries: Int) -> VhostUserGrantTable {
        var info = client.grantTableInfo()
        info.tableSize = UInt64(entries) * VhostUserGrantTable.entryByteCount
        return info
    }

    @Test("GHT-LIM-20: a grant table of more entries than maxGrantEntries is refused with a non-zero ack; one at the bound is accepted; the session goes on")
    func entryBound() throws {
        var configuration = BackEndConfiguration()
        configuration.maxGrantEntries = 1024
        let session = try Self.connect("lim20", configuration)
        let client = session.client
        let table = try SharedMemory.create(name: "lim20", size: 2048 * 8)
        #expect(try !client.ack(.setGrantTable(Self.info(client, entries: 1025)), fds: [table.fd.rawValue]).isSuccess)
        #expect(try client.ack(.setGrantTable(Self.info(client, entries: 1024)), fds: [table.fd.rawValue]).isSuccess)
        #expect(BackEndConfiguration().maxGrantEntries == 1 << 20, "the default")
        try Self.close(session)
    }

    @Test("GHT-LIM-23: a grant table larger than the file it is in is refused (checked against the file's size), not faulted on")
    func shortFile() throws {
        let session = try Self.connect("lim23")
        let client = session.client
        // The client's table file holds 4096 bytes: 512 entries.
        #expect(try !client.ack(.setGrantTable(Self.info(client, entries: 1024)), fds: [client.table.fd.rawValue]).isSuccess)
        var past = client.grantTableInfo()
        past.tableOffset = 4096
        #expect(try !client.ack(.setGrantTable(past), fds: [client.table.fd.rawValue]).isSuccess, "a window past the end")
        #expect(try client.ack(.setGrantTable(client.grantTableInfo()), fds: [client.table.fd.rawValue]).isSuccess)
        try Self.close(session)
    }

    @Test("GHT-LIM-21, GHT-LIM-22: a sparse table of 2^24 entries and a REVOKE_GRANTS of all of it cost the back-end nothing per entry")
    func nothingPerEntry() throws {
        var configuration = BackEndConfiguration()
        configuration.maxGrantEntries = 1 << 24
        let session = try Self.connect("lim21", configuration)
        let client = session.client
        let entries = 1 << 24
        let table = try SharedMemory.create(name: "lim21", size: entries * 8)   // 128 MiB that cost the sender nothing
        var accepted = false
        let set = try PeakMemory.growth {
            accepted = try client.ack(.setGrantTable(Self.info(client, entries: entries)), fds: [table.fd.rawValue]).isSuccess
        }
        #expect(accepted)
        #expect(set < 40 << 20, "SET_GRANT_TABLE grew the peak resident set by \(set >> 20) MiB")
        var answer: UInt64 = 1
        let revoke = try PeakMemory.growth {
            try client.send(.revokeGrants(VhostUserGrantRange(first: GrantReference(0), count: UInt32(entries))))
            answer = try client.u64Reply(request: 1025)
        }
        #expect(answer == 0)
        #expect(revoke < 40 << 20, "REVOKE_GRANTS grew the peak resident set by \(revoke >> 20) MiB")
        try Self.close(session)
    }
}
