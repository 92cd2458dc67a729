import Synchronization
import Testing
@testable import VirtioScheduler

/// The resource accountant under races: claims against claims, uses against a deferred
/// revocation. Child tasks on the cooperative pool run on every core; they yield between steps
/// so that the interleavings vary.
@Suite("Resource ledger: races")
struct ResourceLedgerStressTests {
    /// Round k: contender c claims 0x8000 bytes from k·0x10000 + c·0x100, so all claims of a
    /// round overlap and no two rounds do (and VF k).
    static func region(_ round: Int, _ contender: Int) -> Resource {
        .memoryRegion(start: UInt64(round) * 0x10000 + UInt64(contender) * 0x100, length: 0x8000)
    }

    @Test("GHT-LED-01: racing claims of overlapping ranges: exactly one claimant wins each, the others see it as the holder")
    func racingClaims() async {
        let ledger = ResourceLedger()
        let rounds = 300, contenders = 6
        let outcomes = await withTaskGroup(of: [(Resource, DomainID, LedgerError?)].self) { group in
            for c in 1...contenders {
                group.addTask {
                    let me = DomainID(UInt16(c))
                    var mine: [(Resource, DomainID, LedgerError?)] = []
                    for round in 0..<rounds {
                        for r in [Self.region(round, c), .virtualFunction(round)] {
                            mine.append((r, me, ledgerRefusal { try ledger.claim(r, for: me) }))
                        }
                        if round % 16 == 0 { await Task.yield() }
                    }
                    return mine
                }
            }
            var all: [(Resource, DomainID, LedgerError?)] = []
            for await mine in group { all += mine }
            return all
        }
        let entries = ledger.dump()
        #expect(entries.count == 2 * rounds)
        for round in 0..<rounds {
            for kind in [ResourceKind.memoryRegion, .virtualFunction] {
                let tries = outcomes.filter { r, _, _ in
                    r.kind == kind && (kind == .virtualFunction ? r == .virtualFunction(round) : r.range.lowerBound / 0x10000 == UInt64(round))
                }
                let winners = tries.filter { $0.2 == nil }
                #expect(tries.count == contenders)
                #expect(winners.count == 1, "round \(round), \(kind)")
                guard let (won, winner, _) = winners.first else { continue }
                #expect(entries.contains { $0.resource == won && $0.owner == winner })
                for (r, _, refusal) in tries where refusal != nil {
                    #expect(refusal == .alreadyOwned(r, by: winner))
                }
            }
        }
        for (a, b) in zip(entries, entries.dropFirst()) { #expect(!a.resource.overlaps(b.resource)) }
    }

    @Test("GHT-LED-05, GHT-LED-06: racing uses against a deferred revocation: no use begins after the mark, the claim goes with the last use")
    func racingUsesAndRevocation() async throws {
        for trial in 0..<12 {
            try await raceUsesAgainstRevocation(trial: trial)
        }
    }

    /// What one user task saw.
    struct UserTally: Sendable {
        var begun = 0, ended = 0, begunAfterMark = 0
        var completions: [Resource] = []
        var unexpected: [String] = []
    }

    func raceUsesAgainstRevocation(trial: Int) async throws {
        let ledger = ResourceLedger()
        let vf = Resource.virtualFunction(trial)
        let owner = DomainID(1), users = (1...4).map { DomainID(UInt16($0)) }
        try ledger.claim(vf, for: owner)
        try ledger.share(vf, by: owner, with: Set(users.dropFirst()))
        // The anchor: a use the owner begins before the race and the revoker ends only after the
        // revocation is marked, so that the revocation always meets a claim in use and defers.
        try ledger.beginUse(vf, by: owner)
        let marked = Flag(), begun = Counter(), finished = Counter()

        let (outcome, tallies) = try await withThrowingTaskGroup(of: (RevocationOutcome?, UserTally?).self) { group in
            for user in users {
                group.addTask {
                    var tally = UserTally()
                    for round in 0..<400 {
                        // Each round holds up to 1 + round % 3 uses at once, across a yield.
                        var held = 0
                        for _ in 0...(round % 3) {
                            let afterMark = marked.isSet
                            guard let refusal = ledgerRefusal({ try ledger.beginUse(vf, by: user) }) else {
                                held += 1
                                tally.begun += 1
                                begun.increment()
                                if afterMark { tally.begunAfterMark += 1 }
                                continue
                            }
                            if refusal != .revocationPending(vf) && refusal != .denied(user, vf) { tally.unexpected.append("\(refusal)") }
                            break
                        }
                        await Task.yield()
                        for _ in 0..<held {
                            do {
                                if case .revocationCompleted(let r) = try ledger.endUse(vf, by: user) { tally.completions.append(r) }
                                tally.ended += 1
                            } catch {
                                tally.unexpected.append("end: \(error)")
                            }
                        }
                        if held == 0 && marked.isSet { break }
                    }
                    finished.increment()
                    return (nil, tally)
                }
            }
            group.addTask {
                while begun.value < 50 && finished.value < users.count { await Task.yield() }
                let outcome = try ledger.revoke(vf, from: owner, mode: .deferIfInUse)
                marked.set()
                for _ in 0..<8 { await Task.yield() }
                var anchor = UserTally(begun: 1)
                if case .revocationCompleted(let r) = try ledger.endUse(vf, by: owner) { anchor.completions.append(r) }
                anchor.ended = 1
                return (outcome, anchor)
            }
            group.addTask {
                // Whenever anyone looks, a claim being revoked still has a user: it goes with
                // its last use, not later and not before.
                while finished.value < users.count {
                    for entry in ledger.dump() where entry.revocationPending { #expect(!entry.users.isEmpty) }
                    await Task.yield()
                }
                return (nil, nil)
            }
            var outcome: RevocationOutcome?
            var tallies: [UserTally] = []
            for try await (o, t) in group {
                if let o { outcome = o }
                if let t { tallies.append(t) }
            }
            return (outcome, tallies)
        }
        // The claim went with the last use: exactly one end reported the completion, and no
        // end after it failed (every use that began ended, none was refused).
        let completions = tallies.flatMap(\.completions)
        #expect(tallies.flatMap(\.unexpected) == [])
        #expect(tallies.count == users.count + 1)
        #expect(tallies.allSatisfy { $0.begunAfterMark == 0 }, "a use began after the revocation was marked")
        #expect(tallies.map(\.begun) == tallies.map(\.ended), "every use that began ended")
        #expect(ledger.dump().isEmpty, "no claim and no use count left")
        let revoked = ledger.events.filter {
            switch $0.kind {
            case .revoked, .revocationDeferred, .revocationCompleted: true
            default: false
            }
        }.map(\.kind)
        guard case .deferred(let holders)? = outcome else {
            Issue.record("the revocation met the anchor use and should have been deferred: \(String(describing: outcome))")
            return
        }
        #expect(holders[owner, default: 0] >= 1 && holders.values.allSatisfy { $0 > 0 } && holders.keys.allSatisfy(users.contains))
        #expect(revoked == [.revocationDeferred(vf, owner: owner, users: holders), .revocationCompleted(vf, owner: owner)])
        #expect(completions == [vf], "exactly one end, the last, completes the revocation")
    }
}

/// A flag set once, read by every task.
private final class Flag: Sendable {
    private let storage = Atomic<Bool>(false)
    func set() { storage.store(true, ordering: .releasing) }
    var isSet: Bool { storage.load(ordering: .acquiring) }
}

/// A counter shared by tasks.
private final class Counter: Sendable {
    private let storage = Atomic<Int>(0)
    func increment() { storage.add(1, ordering: .sequentiallyConsistent) }
    var value: Int { storage.load(ordering: .sequentiallyConsistent) }
}
