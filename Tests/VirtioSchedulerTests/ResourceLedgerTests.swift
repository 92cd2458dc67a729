import Testing
import VirtioConformance
@testable import VirtioScheduler

/// The ledger's refusal of `body`, or nil when it succeeds: lets a test compare the refusal
/// itself. (A closure's thrown type is not inferred, so `body` throws `any Error`; anything but
/// a ``LedgerError`` is a failure.)
func ledgerRefusal<T>(_ body: () throws -> T, sourceLocation: SourceLocation = #_sourceLocation) -> LedgerError? {
    do {
        _ = try body()
        return nil
    } catch let error as LedgerError {
        return error
    } catch {
        Issue.record("not a LedgerError: \(error)", sourceLocation: sourceLocation)
        return nil
    }
}

/// The resource accountant: ownership, default deny, shares and reservations (GHT-LED-01 to
/// GHT-LED-04). Revocation, use accounting, release and dumps are in
/// ResourceLedgerRevocationTests.swift, the races in ResourceLedgerStressTests.swift.
@Suite("Resource ledger: ownership, default deny, shares, reservations")
struct ResourceLedgerTests {
    let g1 = DomainID(1), g2 = DomainID(2), g3 = DomainID(3)

    @Test("Resources: constructors give the ranges the ledger records; values no range can hold give empty ones")
    func resources() {
        #expect(Resource.virtualFunction(3).range == 3..<4)
        #expect(Resource.queue(7) == Resource(kind: .queue, range: 7..<8))
        #expect(Resource.grantReferences(first: 8, count: 8).range == 8..<16)
        #expect(Resource.memoryRegion(start: 0x1000, length: 0x2000).range == 0x1000..<0x3000)
        #expect(Resource.eventfd(5).kind == .eventfd)
        #expect(Resource.virtualFunction(-1).range.isEmpty)
        #expect(Resource.queue(.max).range.isEmpty)
        #expect(Resource.grantReferences(first: 8, count: 0).range.isEmpty)
        #expect(Resource.memoryRegion(start: .max - 1, length: 2).range.isEmpty)
        #expect(Resource.memoryRegion(start: .max - 1, length: 1).range == (UInt64.max - 1)..<UInt64.max)
        #expect(Resource.queue(3).overlaps(.queue(3)) && !Resource.queue(3).overlaps(.eventfd(3)))
        #expect(!Resource.queue(3).overlaps(.queue(4)))
        #expect(Resource.queue(3).description == "queue[3]")
        #expect(Resource.memoryRegion(start: 0x1000, length: 0x1000).description == "memoryRegion[0x1000..<0x2000]")
        #expect(Resource.grantReferences(first: 8, count: 1).description == "grantReferences[8..<9]")
        #expect(Resource.virtualFunction(0) < .queue(0) && Resource.queue(0) < .queue(1))
    }

    @Test("GHT-LED-01, GHT-LED-02: an empty range is refused everywhere with a typed error and claims nothing")
    func emptyRanges() {
        let ledger = ResourceLedger()
        let empty = Resource.memoryRegion(start: 0x1000, length: 0)
        #expect(ledgerRefusal { try ledger.claim(empty, for: g1) } == .emptyRange(empty))
        #expect(ledgerRefusal { try ledger.reserve(.virtualFunction(-1)) } == .emptyRange(.virtualFunction(-1)))
        #expect(ledgerRefusal { try ledger.authorize(g1, empty) } == .emptyRange(empty))
        #expect(ledgerRefusal { try ledger.beginUse(empty, by: g1) } == .emptyRange(empty))
        #expect(ledgerRefusal { try ledger.endUse(empty, by: g1) } == .emptyRange(empty))
        #expect(ledgerRefusal { try ledger.share(empty, by: g1, with: [g2]) } == .emptyRange(empty))
        #expect(ledgerRefusal { try ledger.revoke(empty, from: g1, mode: .refuseIfInUse) } == .emptyRange(empty))
        #expect(ledger.dump().isEmpty)
        // An empty range inside a claim is still refused, not vacuously allowed.
        #expect(ledgerRefusal { try ledger.claim(.memoryRegion(start: 0, length: 0x10000), for: g1) } == nil)
        #expect(!ledger.isAllowed(g1, empty))
    }

    @Test("GHT-LED-01: a claim overlapping another of the same kind is refused, whoever holds it, the holder included")
    func oneOwner() throws {
        let ledger = ResourceLedger()
        let held = Resource.memoryRegion(start: 0x1000, length: 0x2000)
        try ledger.claim(held, for: g1)
        let before = ledger.dump()
        for r in [Resource.memoryRegion(start: 0x2000, length: 0x2000), .memoryRegion(start: 0, length: 0x1001),
                  .memoryRegion(start: 0x1800, length: 0x10), held, .memoryRegion(start: 0, length: 0x10000),
                  .memoryRegion(start: 0x2fff, length: 1)] {
            for claimant in [g1, g2, DomainID.backEnd] {
                #expect(ledgerRefusal { try ledger.claim(r, for: claimant) } == .alreadyOwned(r, by: g1))
            }
            #expect(ledgerRefusal { try ledger.reserve(r) } == .alreadyOwned(r, by: g1))
        }
        #expect(ledger.dump() == before, "refused claims change nothing")
        // Adjacent ranges and other kinds with the same numbers do not conflict.
        try ledger.claim(.memoryRegion(start: 0x3000, length: 0x1000), for: g2)
        try ledger.claim(.memoryRegion(start: 0, length: 0x1000), for: g3)
        try ledger.claim(.grantReferences(first: 0x1000, count: 0x2000), for: g2)
        try ledger.claim(.queue(0x1000), for: g3)
        #expect(ledger.dump().count == 5)
        #expect(ledger.dump().filter { $0.resource.kind == .memoryRegion }.map(\.owner) == [g3, g1, g2])
    }

    @Test("GHT-LED-01, GHT-LED-03: a domain shared with cannot claim what it was lent, nor can the owner claim it twice")
    func sharedIsStillOwned() throws {
        let ledger = ResourceLedger()
        try ledger.claim(.virtualFunction(0), for: g1)
        try ledger.share(.virtualFunction(0), by: g1, with: [g2])
        #expect(ledgerRefusal { try ledger.claim(.virtualFunction(0), for: g2) } == .alreadyOwned(.virtualFunction(0), by: g1))
        #expect(ledgerRefusal { try ledger.claim(.virtualFunction(0), for: g1) } == .alreadyOwned(.virtualFunction(0), by: g1))
        #expect(ledger.dump().map(\.owner) == [g1])
    }

    @Test("GHT-LED-01, GHT-LED-02: the ledger agrees with a brute-force model over random claims and checks")
    func randomModel() {
        var random = SplitMix64(seed: 0x5EED_1ED6)
        for _ in 0..<20 {
            let ledger = ResourceLedger()
            var model: [(range: Range<UInt64>, owner: DomainID)] = []
            for _ in 0..<200 {
                let start = random.next() % 256, length = random.next() % 24 + 1
                let r = Resource.eventfd(0).withRange(start..<(start + length))
                let who = DomainID(UInt16(random.next() % 3 + 1))
                let holder = model.filter { $0.range.overlaps(r.range) }.min { $0.range.lowerBound < $1.range.lowerBound }
                let refusal = ledgerRefusal { try ledger.claim(r, for: who) }
                #expect(refusal == holder.map { .alreadyOwned(r, by: $0.owner) })
                if holder == nil { model.append((r.range, who)) }  // the ledger names the first holder in order
                let cover = model.first { $0.range.lowerBound <= r.range.lowerBound && r.range.upperBound <= $0.range.upperBound }
                #expect(ledger.isAllowed(who, r) == (cover?.owner == who))
            }
            #expect(ledger.dump().map(\.resource.range) == model.map(\.range).sorted { $0.lowerBound < $1.lowerBound })
        }
    }

    @Test("GHT-LED-02: default deny: without a claim nobody may use anything, the back-end included")
    func defaultDeny() throws {
        let ledger = ResourceLedger()
        for d in [DomainID.backEnd, g1] {
            #expect(!ledger.isAllowed(d, .queue(1)))
            #expect(ledgerRefusal { try ledger.authorize(d, .queue(1)) } == .denied(d, .queue(1)))
            #expect(ledgerRefusal { try ledger.beginUse(.queue(1), by: d) } == .denied(d, .queue(1)))
        }
        try ledger.claim(.queue(1), for: g1)
        #expect(ledger.isAllowed(g1, .queue(1)))
        #expect(ledgerRefusal { try ledger.authorize(g1, .queue(1)) } == nil)
        #expect(!ledger.isAllowed(g2, .queue(1)))
        #expect(!ledger.isAllowed(.backEnd, .queue(1)), "the back-end is a domain like any other: it uses what it holds")
        #expect(!ledger.isAllowed(g1, .eventfd(1)), "a claim allows its own kind only")
        #expect(ledgerRefusal { try ledger.beginUse(.queue(1), by: g2) } == .denied(g2, .queue(1)))
        #expect(ledger.dump().allSatisfy { $0.users.isEmpty }, "a denied use is not counted")
    }

    @Test("GHT-LED-02: a use must lie wholly inside one claim, even when the same domain holds the neighbour")
    func wholeCover() throws {
        let ledger = ResourceLedger()
        try ledger.claim(.memoryRegion(start: 0x1000, length: 0x1000), for: g1)
        try ledger.claim(.memoryRegion(start: 0x2000, length: 0x1000), for: g1)
        #expect(ledger.isAllowed(g1, .memoryRegion(start: 0x1000, length: 0x1000)))
        #expect(ledger.isAllowed(g1, .memoryRegion(start: 0x1800, length: 0x800)))
        let straddling = Resource.memoryRegion(start: 0x1800, length: 0x1000)
        #expect(ledgerRefusal { try ledger.authorize(g1, straddling) } == .denied(g1, straddling))
        #expect(!ledger.isAllowed(g1, .memoryRegion(start: 0x2800, length: 0x1000)), "past the end of the last claim")
        #expect(!ledger.isAllowed(g1, .memoryRegion(start: 0x800, length: 0x1000)), "before the first claim")
    }

    @Test("GHT-LED-02, GHT-LED-03: a domain named in a share may use the claim; a domain not named may not")
    func sharedUse() throws {
        let ledger = ResourceLedger()
        let refs = Resource.grantReferences(first: 8, count: 8)
        try ledger.claim(refs, for: g1)
        try ledger.share(refs, by: g1, with: [g2])
        #expect(ledger.isAllowed(g2, .grantReferences(first: 10, count: 2)))
        #expect(!ledger.isAllowed(g3, refs))
        try ledger.beginUse(refs, by: g2)
        #expect(ledger.dump().first?.users == [g2: 1])
        try ledger.unshare(refs, by: g1, from: [g3])
        #expect(ledgerRefusal { try ledger.unshare(refs, by: g1, from: [g2]) } == .inUse(refs, users: [g2: 1]),
                "a share is not withdrawn from under a use")
        try ledger.endUse(refs, by: g2)
        try ledger.unshare(refs, by: g1, from: [g2])
        #expect(!ledger.isAllowed(g2, refs))
        #expect(ledger.dump().first?.sharedWith == [])
    }

    @Test("GHT-LED-03: only the owner shares, unshares or revokes; a share gives use, not the right to share further")
    func onlyOwnerManages() throws {
        let ledger = ResourceLedger()
        try ledger.claim(.queue(4), for: g1)
        try ledger.share(.queue(4), by: g1, with: [g2])
        let before = ledger.dump()
        #expect(ledgerRefusal { try ledger.share(.queue(4), by: g2, with: [g3]) } == .notOwner(g2, .queue(4)))
        #expect(ledgerRefusal { try ledger.share(.queue(4), by: g3, with: [g3]) } == .notOwner(g3, .queue(4)))
        #expect(ledgerRefusal { try ledger.share(.queue(4), by: .backEnd, with: [g3]) } == .notOwner(.backEnd, .queue(4)))
        #expect(ledgerRefusal { try ledger.unshare(.queue(4), by: g2, from: [g2]) } == .notOwner(g2, .queue(4)))
        #expect(ledgerRefusal { try ledger.revoke(.queue(4), from: g2, mode: .deferIfInUse) } == .notOwner(g2, .queue(4)))
        #expect(ledgerRefusal { try ledger.claim(.queue(4), for: g2) } == .alreadyOwned(.queue(4), by: g1))
        #expect(ledger.dump() == before)
        #expect(!ledger.isAllowed(g3, .queue(4)))
        #expect(ledger.events.suffix(6).allSatisfy { if case .refused = $0.kind { true } else { false } })
    }

    @Test("GHT-LED-03: a share names a whole claim, not the owner itself, and shares again add to it")
    func shareRules() throws {
        let ledger = ResourceLedger()
        let vfs = Resource(kind: .virtualFunction, range: 0..<4)
        try ledger.claim(vfs, for: g1)
        #expect(ledgerRefusal { try ledger.share(.virtualFunction(1), by: g1, with: [g2]) } == .noSuchClaim(.virtualFunction(1)))
        #expect(ledgerRefusal { try ledger.share(vfs, by: g1, with: [g1, g2]) } == .shareWithOwner(vfs, owner: g1))
        #expect(ledger.dump().first?.sharedWith == [], "a refused share names nobody, not even the others")
        try ledger.share(vfs, by: g1, with: [g3])
        try ledger.share(vfs, by: g1, with: [g2, g3])
        try ledger.share(vfs, by: g1, with: [])
        #expect(ledger.dump().first?.sharedWith == [g2, g3])
        try ledger.unshare(vfs, by: g1, from: [g3, g1, DomainID(9)])
        #expect(ledger.dump().first?.sharedWith == [g2], "unsharing a domain not named is a no-op")
    }

    @Test("GHT-LED-04: a guest never claims into a back-end reservation; the back-end's own claims there are refused as overlaps")
    func reservations() throws {
        let ledger = ResourceLedger()
        let kept = Resource.memoryRegion(start: 0, length: 0x10000)
        try ledger.reserve(kept)
        try ledger.reserve(.virtualFunction(0))
        let before = ledger.dump()
        let inside = Resource.memoryRegion(start: 0x8000, length: 0x1000)
        let across = Resource.memoryRegion(start: 0xF000, length: 0x2000)
        #expect(ledgerRefusal { try ledger.claim(inside, for: g1) } == .reservedForBackEnd(inside))
        #expect(ledgerRefusal { try ledger.claim(across, for: g2) } == .reservedForBackEnd(across))
        #expect(ledgerRefusal { try ledger.claim(.virtualFunction(0), for: g1) } == .reservedForBackEnd(.virtualFunction(0)))
        #expect(ledgerRefusal { try ledger.claim(inside, for: .backEnd) } == .alreadyOwned(inside, by: .backEnd))
        #expect(ledgerRefusal { try ledger.reserve(inside) } == .alreadyOwned(inside, by: .backEnd))
        #expect(ledger.dump() == before)
        #expect(before.allSatisfy { $0.reserved && $0.owner == .backEnd })
        #expect(!ledger.isAllowed(g1, inside) && ledger.isAllowed(.backEnd, inside))
        try ledger.claim(.virtualFunction(1), for: g1)
    }

    @Test("GHT-LED-04, GHT-LED-03: only the back-end shares, unshares or revokes a reservation; a guest it lent it to cannot")
    func reservationManagement() throws {
        let ledger = ResourceLedger()
        let kept = Resource.eventfd(9)
        try ledger.reserve(kept)
        #expect(ledgerRefusal { try ledger.share(kept, by: g1, with: [g2]) } == .reservedForBackEnd(kept))
        try ledger.share(kept, by: .backEnd, with: [g1])
        #expect(ledger.isAllowed(g1, kept))
        #expect(ledgerRefusal { try ledger.share(kept, by: g1, with: [g2]) } == .reservedForBackEnd(kept))
        #expect(ledgerRefusal { try ledger.unshare(kept, by: g1, from: [g1]) } == .reservedForBackEnd(kept))
        #expect(ledgerRefusal { try ledger.revoke(kept, from: g1, mode: .deferIfInUse) } == .reservedForBackEnd(kept))
        try ledger.beginUse(kept, by: g1)
        #expect(ledgerRefusal { try ledger.revoke(kept, from: .backEnd, mode: .refuseIfInUse) } == .inUse(kept, users: [g1: 1]))
        try ledger.endUse(kept, by: g1)
        #expect(try ledger.revoke(kept, from: .backEnd, mode: .refuseIfInUse) == .revoked)
        #expect(ledger.dump().isEmpty)
        try ledger.claim(kept, for: g2)
    }
}

private extension Resource {
    /// The same kind over another range.
    func withRange(_ range: Range<UInt64>) -> Resource { Resource(kind: kind, range: range) }
}
