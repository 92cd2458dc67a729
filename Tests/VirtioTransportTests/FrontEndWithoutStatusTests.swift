import Testing
import VhostUser
import VirtioCore
import VirtioDevices
import VirtioSystem
import VirtioTransport

/// Our front-end against a back-end that, like libvhost-user's (qemu-storage-daemon 7.2), offers
/// no STATUS protocol feature: what `bench blk` needs to measure the anchor.
@Suite("A front-end without STATUS", .tags(.transport), .serialized)
struct FrontEndWithoutStatusTests {
    static func backEnd(_ tag: String) throws -> BackEnd {
        var configuration = BackEndConfiguration()
        configuration.logSink = nil
        configuration.protocolFeatures = [.replyAck, .config, .multiQueue]
        let backEnd = try BackEnd(socketPath: temporarySocketPath(tag), configuration: configuration) { ChecksumEchoDevice() }
        backEnd.start()
        return backEnd
    }

    @Test("GHT-VU-26: a front-end that does not require STATUS drives a back-end without it: no GET_STATUS or SET_STATUS is sent, the status is kept on its side, and requests stream verified")
    func drivesBackEndWithoutStatus() throws {
        let backEnd = try Self.backEnd("nostatus")
        defer { backEnd.stop() }
        var configuration = FrontEndConfiguration()
        configuration.mode = .guestPhysical
        configuration.requiresStatus = false
        configuration.sealsReadOnlyMemory = false
        let frontEnd = try FrontEnd.connect(socketPath: backEnd.socketPath, configuration: configuration)
        #expect(try frontEnd.status() == [.acknowledge, .driver, .featuresOK, .driverOK], "kept on the front-end's side")
        try EndpointTests.stream(frontEnd, count: 200)
        frontEnd.close()
        let report = try #require(endedReports(backEnd).first)
        #expect(report.chains == 200)
        #expect(report.end?.description == "disconnected", "the session ended with the front-end's close, not with a violation")
    }

    @Test("GHT-VU-26: by default the front-end requires STATUS and refuses a back-end without it at negotiation, naming the feature")
    func requiresStatusByDefault() throws {
        let backEnd = try Self.backEnd("needstatus")
        defer { backEnd.stop() }
        var configuration = FrontEndConfiguration()
        configuration.mode = .guestPhysical
        do {
            _ = try FrontEnd.connect(socketPath: backEnd.socketPath, configuration: configuration)
            Issue.record("connected without STATUS")
        } catch {
            guard case .negotiation(let why) = error else {
                Issue.record("unexpected error \(error)")
                return
            }
            #expect(why.contains("missing protocol features"))
        }
    }
}
