import Testing
@testable import VirtioTransport
import VirtioCore
import VhostUser

/// The front-end's feature negotiation and status sequence, seen by a scripted device
/// (``DriverRuleDevice``) that records every request.
@Suite("Front-end negotiation as a device sees it", .tags(.transport))
struct FrontEndNegotiationTests {
    /// Bits the scripted device may offer: the transport's own, every reserved and foreign
    /// bit, and a few device-type bits. Bit 30 (vhost-user's PROTOCOL_FEATURES) is always offered.
    static let candidateBits: [Int] = [0, 1, 5, 23, 24, 27, 28, 29, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 47, 49, 50, 63]

    @Test("FEAT-DRV-01, VER-DRV-01, AP-DRV-01: over random offers the accepted set is a subset of the offer; VERSION_1 and ACCESS_PLATFORM are accepted whenever offered")
    func acceptedSubsetOfOffered() throws {
        var random = SystemRandomNumberGenerator()
        var completed = 0
        for trial in 0..<24 {
            var offered: VirtioFeatures = .vhostUserProtocolFeatures
            for bit in Self.candidateBits where Bool.random(using: &random) { offered.insert(VirtioFeatures(bit: bit)) }
            // Every fourth trial offers what a grant-mode front-end needs, so both outcomes occur.
            if trial % 4 == 0 { offered.formUnion([.version1, .accessPlatform]) }
            var configuration = FrontEndConfiguration.small
            configuration.deviceFeatures = VirtioFeatures(rawValue: 0x00FF_FFFF | 0xFFFC_0000_0000_0000)   // every device-type bit
            var script = DriverRuleDevice.Script()
            script.offered = offered
            let (frontEnd, device) = try DriverRuleDevice.frontEnd(script, configuration: configuration)
            let succeeded = (try? frontEnd.initialize()) != nil
            frontEnd.close()
            let accepted = device.finish().compactMap { if case .request(.setFeatures(let f)) = $0 { return f } else { return nil } }
            for f in accepted {
                #expect(offered.isSuperset(of: f), "trial \(trial): accepted \(f.subtracting(offered)) that was not offered")
            }
            if offered.isSuperset(of: [.version1, .accessPlatform]) {
                #expect(succeeded, "trial \(trial): \(offered)")
                let f = try #require(accepted.last)
                #expect(f.isSuperset(of: [.version1, .accessPlatform]), "trial \(trial)")   // VER-DRV-01, AP-DRV-01
                #expect(frontEnd.features == f.subtracting(.vhostUserProtocolFeatures))
                completed += 1
            } else {
                #expect(!succeeded, "trial \(trial): a grant-mode front-end needs VERSION_1 and ACCESS_PLATFORM")
            }
        }
        #expect(completed >= 6)
    }

    /// A device that lacks something the front-end cannot do without.
    struct MissingFeature: Sendable, CustomTestStringConvertible {
        let name: String
        let offered: VirtioFeatures
        let ring: FrontEndConfiguration.RingFormat
        var testDescription: String { name }
    }

    static let missing: [MissingFeature] = [
        MissingFeature(name: "no VERSION_1", offered: [.accessPlatform, .eventIndex, .indirectDescriptors, .vhostUserProtocolFeatures], ring: .split),
        MissingFeature(name: "no ACCESS_PLATFORM", offered: [.version1, .eventIndex, .indirectDescriptors, .vhostUserProtocolFeatures], ring: .split),
        MissingFeature(name: "no RING_PACKED for a packed front-end", offered: [.version1, .accessPlatform, .vhostUserProtocolFeatures], ring: .packed),
    ]

    @Test("FEAT-DRV-03, AP-DRV-03, INIT-DRV-04: without a feature it needs the front-end writes FAILED, never DRIVER_OK, configures no queue and grants nothing",
          arguments: missing)
    func missingFeatureFails(_ missing: MissingFeature) throws {
        var script = DriverRuleDevice.Script()
        script.offered = missing.offered
        var configuration = FrontEndConfiguration.small
        configuration.ring = missing.ring
        let (frontEnd, device) = try DriverRuleDevice.frontEnd(script, configuration: configuration)
        #expect {
            try frontEnd.initialize()
        } throws: { error in
            guard case FrontEndError.negotiation = error else { return false }
            return true
        }
        #expect(frontEnd.queues.isEmpty)
        #expect(frontEnd.grantsMade == 0, "no ring or buffer was granted")
        frontEnd.close()
        let events = device.finish()
        let writes = events.statusWrites
        let failed = try #require(writes.firstIndex { $0.contains(.failed) }, "FAILED was written: \(writes)")
        let onlyResets = writes[(failed + 1)...].allSatisfy { $0.isEmpty }
        #expect(onlyResets, "after FAILED only a reset: \(writes)")
        #expect(!writes.contains { $0.contains(.driverOK) || $0.contains(.featuresOK) })
        #expect(!events.contains { if case .request(let m) = $0 { return m.request.isVringSetup } else { return false } })
        #expect(!events.contains(request: { if case .setFeatures = $0 { return true } else { return false } }))
    }

    @Test("FEAT-DRV-04: reserved, foreign-transport and unimplemented transport bits are offered but never accepted, and initialization still reaches DRIVER_OK",
          arguments: [FrontEndConfiguration.RingFormat.split, .packed])
    func unknownBitsIgnored(_ ring: FrontEndConfiguration.RingFormat) throws {
        var script = DriverRuleDevice.Script()
        script.offered = VirtioFeatures(rawValue: ~0)   // everything, bit 30 (PROTOCOL_FEATURES) included
        var configuration = FrontEndConfiguration.small
        configuration.ring = ring
        configuration.deviceFeatures = VirtioFeatures(rawValue: ~0)   // the embedder asks for everything too
        let (frontEnd, device) = try DriverRuleDevice.frontEnd(script, configuration: configuration)
        try frontEnd.initialize()
        frontEnd.close()
        let events = device.finish()
        let accepted = try #require(events.compactMap { if case .request(.setFeatures(let f)) = $0 { return f } else { return nil } }.last)
        let neverAccepted = VirtioFeatures.reservedBits.union(.foreignTransportBits).union([.notifyOnEmpty, .anyLayout])
            .union(VirtioFeatures.transportBits.subtracting(.implementedTransport).subtracting(.vhostUserProtocolFeatures))
            .union(.inOrder)   // the front-end's rings can run in order, but it never asks for it
        #expect(accepted.intersection(neverAccepted).isEmpty, "accepted \(accepted.intersection(neverAccepted))")
        #expect(accepted.contains(.ringPacked) == (ring == .packed))
        #expect(events.statusWrites.contains { $0.contains(.driverOK) })
        #expect(!events.statusWrites.contains { $0.contains(.failed) })
    }

    @Test("INIT-DRV-03, INIT-DRV-04: FEATURES_OK that does not stick makes the front-end write FAILED and never DRIVER_OK")
    func featuresOKNotSticking() throws {
        var script = DriverRuleDevice.Script()
        script.dropsFeaturesOK = true
        let (frontEnd, device) = try DriverRuleDevice.frontEnd(script)
        #expect(throws: FrontEndError.negotiation("FEATURES_OK did not stick")) { try frontEnd.initialize() }
        #expect(frontEnd.queues.isEmpty && frontEnd.grantsMade == 0)
        frontEnd.close()
        let events = device.finish()
        let writes = events.statusWrites
        let featuresOK = try #require(writes.firstIndex { $0.contains(.featuresOK) })
        #expect(writes.count > featuresOK + 1 && writes[featuresOK + 1].contains(.failed), "\(writes)")
        #expect(!writes.contains { $0.contains(.driverOK) })
        #expect(!events.contains { if case .request(let m) = $0 { return m.request.isVringSetup } else { return false } })
    }
}

extension VhostUserRequest {
    /// The requests that set a queue up.
    var isVringSetup: Bool {
        switch self {
        case .setVringNum, .setVringAddress, .setVringBase, .setVringKick, .setVringCall, .setVringErr, .setVringEnable: return true
        default: return false
        }
    }
}
