import Testing
import VirtioCore
@testable import VirtioScheduler

/// The resource accountant: revocation against uses, use accounting, a domain going away, the
/// event log and the dumps (GHT-LED-05 to GHT-LED-08).
@Suite("Resource ledger: revocation, uses, release, dumps")
struct ResourceLedgerRevocationTests {
    let g1 = DomainID(1), g2 = DomainID(2), g3 = DomainID(3)

    @Test("GHT-LED-05: revoking a claim nobody uses removes it and its shares at once, and says so")
    func revokeIdle() throws {
        let ledger = ResourceLedger()
        try ledger.claim(.virtualFunction(2), for: g1)
        try ledger.share(.virtualFunction(2), by: g1, with: [g2])
        #expect(try ledger.revoke(.virtualFunction(2), from: g1, mode: .refuseIfInUse) == .revoked)
        #expect(ledger.dump().isEmpty)
        #expect(!ledger.isAllowed(g1, .virtualFunction(2)) && !ledger.isAllowed(g2, .virtualFunction(2)))
        #expect(ledger.events.last?.kind == .revoked(.virtualFunction(2), owner: g1))
        try ledger.claim(.virtualFunction(2), for: g3)
        #expect(ledgerRefusal { try ledger.share(.virtualFunction(2), by: g1, with: [g2]) } == .notOwner(g1, .virtualFunction(2)))
    }

    @Test("GHT-LED-05: a revocation refused because of uses changes nothing and is in the event log")
    func refusedRevocation() throws {
        let ledger = ResourceLedger()
        let region = Resource.memoryRegion(start: 0x10000, length: 0x4000)
        try ledger.claim(region, for: g1)
        try ledger.share(region, by: g1, with: [g2])
        try ledger.beginUse(.memoryRegion(start: 0x11000, length: 0x1000), by: g2)
        let before = ledger.dump()
        #expect(ledgerRefusal { try ledger.revoke(region, from: g1, mode: .refuseIfInUse) } == .inUse(region, users: [g2: 1]))
        #expect(ledger.dump() == before)
        #expect(ledger.isAllowed(g1, region) && ledger.isAllowed(g2, region))
        #expect(ledger.events.last?.kind == .refused(.revoke, by: g1, .inUse(region, users: [g2: 1])))
    }

    @Test("GHT-LED-05: a deferred revocation stops every new use, the owner's too, and completes with the last use")
    func deferredRevocation() throws {
        let ledger = ResourceLedger()
        let q = Resource.queue(12)
        try ledger.claim(q, for: g1)
        try ledger.share(q, by: g1, with: [g2])
        try ledger.beginUse(q, by: g1)
        try ledger.beginUse(q, by: g2)
        try ledger.beginUse(q, by: g2)
        #expect(try ledger.revoke(q, from: g1, mode: .deferIfInUse) == .deferred(users: [g1: 1, g2: 2]))
        #expect(ledger.dump() == [LedgerEntry(resource: q, owner: g1, reserved: false, sharedWith: [g2],
                                              users: [g1: 1, g2: 2], revocationPending: true)])
        for d in [g1, g2] {
            #expect(!ledger.isAllowed(d, q))
            #expect(ledgerRefusal { try ledger.authorize(d, q) } == .revocationPending(q))
            #expect(ledgerRefusal { try ledger.beginUse(q, by: d) } == .revocationPending(q))
        }
        #expect(ledgerRefusal { try ledger.share(q, by: g1, with: [g3]) } == .revocationPending(q))
        #expect(ledgerRefusal { try ledger.claim(q, for: g3) } == .alreadyOwned(q, by: g1), "not gone until the last use ends")
        #expect(try ledger.endUse(q, by: g2) == .ended)
        #expect(try ledger.endUse(q, by: g1) == .ended)
        #expect(ledger.dump().first?.users == [g2: 1])
        #expect(try ledger.endUse(q, by: g2) == .revocationCompleted(q))
        #expect(ledger.dump().isEmpty)
        let reported = ledger.events.filter {
            switch $0.kind {
            case .revocationDeferred, .revocationCompleted: true
            default: false
            }
        }
        try #require(reported.map(\.kind) == [.revocationDeferred(q, owner: g1, users: [g1: 1, g2: 2]), .revocationCompleted(q, owner: g1)])
        #expect(reported[0].sequence < reported[1].sequence)
        try ledger.claim(q, for: g3)
    }

    @Test("GHT-LED-05: revocation names a whole claim; deferring twice adds nothing; refusing a pending one keeps it pending")
    func revocationEdges() throws {
        let ledger = ResourceLedger()
        let refs = Resource.grantReferences(first: 0, count: 16)
        try ledger.claim(refs, for: g1)
        let part = Resource.grantReferences(first: 0, count: 8)
        #expect(ledgerRefusal { try ledger.revoke(part, from: g1, mode: .deferIfInUse) } == .noSuchClaim(part))
        try ledger.beginUse(part, by: g1)
        #expect(try ledger.revoke(refs, from: g1, mode: .deferIfInUse) == .deferred(users: [g1: 1]))
        #expect(try ledger.revoke(refs, from: g1, mode: .deferIfInUse) == .deferred(users: [g1: 1]))
        #expect(ledgerRefusal { try ledger.revoke(refs, from: g1, mode: .refuseIfInUse) } == .inUse(refs, users: [g1: 1]))
        #expect(ledger.dump().first?.revocationPending == true)
        #expect(ledger.events.filter { if case .revocationDeferred = $0.kind { true } else { false } }.count == 1)
        #expect(try ledger.endUse(part, by: g1) == .revocationCompleted(refs))
    }

    @Test("GHT-LED-06: ending a use never begun is refused and never makes a count negative")
    func noUnderflow() throws {
        let ledger = ResourceLedger()
        let vf = Resource.virtualFunction(5)
        #expect(ledgerRefusal { try ledger.endUse(vf, by: g1) } == .notInUse(g1, vf), "no claim at all")
        try ledger.claim(vf, for: g1)
        try ledger.share(vf, by: g1, with: [g2])
        #expect(ledgerRefusal { try ledger.endUse(vf, by: g1) } == .notInUse(g1, vf))
        try ledger.beginUse(vf, by: g1)
        #expect(ledgerRefusal { try ledger.endUse(vf, by: g2) } == .notInUse(g2, vf), "another domain's use is not ours to end")
        try ledger.endUse(vf, by: g1)
        let before = ledger.dump()
        #expect(ledgerRefusal { try ledger.endUse(vf, by: g1) } == .notInUse(g1, vf))
        #expect(ledger.dump() == before && before.first?.users == [:])
        try ledger.beginUse(vf, by: g1)
        #expect(ledger.dump().first?.users == [g1: 1], "a count that went negative would read 0 here")
        #expect(try ledger.revoke(vf, from: g1, mode: .deferIfInUse) == .deferred(users: [g1: 1]))
        #expect(ledger.events.contains { $0.kind == .refused(.endUse, by: g1, .notInUse(g1, vf)) })
    }

    @Test("GHT-LED-06: a use ends only on the range it began on, and uses nest")
    func usesByRange() throws {
        let ledger = ResourceLedger()
        let region = Resource.memoryRegion(start: 0, length: 0x4000)
        let a = Resource.memoryRegion(start: 0, length: 0x1000), b = Resource.memoryRegion(start: 0x1000, length: 0x1000)
        try ledger.claim(region, for: g1)
        try ledger.beginUse(a, by: g1)
        try ledger.beginUse(a, by: g1)
        #expect(ledgerRefusal { try ledger.endUse(b, by: g1) } == .notInUse(g1, b))
        #expect(ledger.dump().first?.users == [g1: 2])
        try ledger.endUse(a, by: g1)
        try ledger.endUse(a, by: g1)
        #expect(ledgerRefusal { try ledger.endUse(a, by: g1) } == .notInUse(g1, a))
        #expect(try ledger.revoke(region, from: g1, mode: .refuseIfInUse) == .revoked)
    }

    @Test("GHT-LED-07: a domain that goes away has its uses ended, the shares naming it removed, its claims revoked or deferred")
    func releaseDomain() throws {
        let ledger = ResourceLedger()
        let idle = Resource.virtualFunction(0), lent = Resource.queue(1), selfUsed = Resource.queue(2)
        let borrowed = Resource.memoryRegion(start: 0x1000, length: 0x1000), pending = Resource.eventfd(5)
        try ledger.claim(idle, for: g1)
        try ledger.claim(lent, for: g1)
        try ledger.share(lent, by: g1, with: [g2])
        try ledger.beginUse(lent, by: g2)
        try ledger.claim(selfUsed, for: g1)
        try ledger.beginUse(selfUsed, by: g1)
        try ledger.claim(borrowed, for: g3)
        try ledger.share(borrowed, by: g3, with: [g1, g2])
        try ledger.beginUse(borrowed, by: g1)
        try ledger.beginUse(borrowed, by: g1)
        try ledger.claim(pending, for: g3)
        try ledger.share(pending, by: g3, with: [g1])
        try ledger.beginUse(pending, by: g1)
        #expect(try ledger.revoke(pending, from: g3, mode: .deferIfInUse) == .deferred(users: [g1: 1]))

        let report = ledger.release(domain: g1)
        var expected = ReleaseReport(domain: g1)
        expected.usesEnded = [selfUsed: 1, borrowed: 2, pending: 1]
        expected.completedRevocations = [pending]
        expected.sharesRemoved = [borrowed, pending]
        expected.revoked = [idle, selfUsed]
        expected.deferred = [lent: [g2: 1]]
        #expect(report == expected)
        #expect(ledger.dump() == [
            LedgerEntry(resource: lent, owner: g1, reserved: false, sharedWith: [g2], users: [g2: 1], revocationPending: true),
            LedgerEntry(resource: borrowed, owner: g3, reserved: false, sharedWith: [g2], users: [:], revocationPending: false),
        ])
        #expect(!ledger.isAllowed(g1, borrowed) && ledger.isAllowed(g2, borrowed))
        #expect(ledgerRefusal { try ledger.endUse(borrowed, by: g1) } == .notInUse(g1, borrowed), "its uses ended with it")
        #expect(ledger.events.contains { $0.kind == .released(g1) })
        #expect(try ledger.endUse(lent, by: g2) == .revocationCompleted(lent))
        #expect(ledger.dump().map(\.resource) == [borrowed])
        #expect(ledger.release(domain: g1).isEmpty, "a second release finds nothing")
    }

    @Test("GHT-LED-05: the event log is bounded, oldest dropped first, in time order")
    func boundedLog() {
        let ledger = ResourceLedger(eventCapacity: 4)
        for n in 0..<10 { #expect(!ledger.isAllowed(g1, .queue(UInt64(n)))) }
        #expect(ledger.events.isEmpty, "a question is not a refusal")
        for n in 0..<10 { _ = ledgerRefusal { try ledger.authorize(g1, .queue(UInt64(n))) } }
        #expect(ledger.events.map(\.sequence) == [6, 7, 8, 9])
        #expect(ledger.events.map(\.kind) == (6..<10).map { .refused(.authorize, by: g1, .denied(g1, .queue(UInt64($0)))) })
        #expect(ledger.droppedEventCount == 6)
        #expect(ledger.events.first?.description == "#6 refused authorize by dom1: dom1 may not use queue[6]")
    }

    @Test("GHT-LED-08: the dump lists every claim by kind and start, with owner, reservation, shares, users and pending revocation")
    func dump() throws {
        let ledger = ResourceLedger()
        try ledger.claim(.eventfd(3), for: g2)
        try ledger.claim(.memoryRegion(start: 0x2000, length: 0x1000), for: g1)
        try ledger.reserve(.virtualFunction(0))
        try ledger.claim(.memoryRegion(start: 0x1000, length: 0x1000), for: g3)
        try ledger.share(.eventfd(3), by: g2, with: [g3, g1])
        try ledger.beginUse(.eventfd(3), by: g1)
        try ledger.beginUse(.eventfd(3), by: g3)
        try ledger.beginUse(.eventfd(3), by: g3)
        _ = try ledger.revoke(.eventfd(3), from: g2, mode: .deferIfInUse)
        #expect(ledger.dump() == [
            LedgerEntry(resource: .virtualFunction(0), owner: .backEnd, reserved: true, sharedWith: [], users: [:], revocationPending: false),
            LedgerEntry(resource: .memoryRegion(start: 0x1000, length: 0x1000), owner: g3, reserved: false, sharedWith: [], users: [:],
                        revocationPending: false),
            LedgerEntry(resource: .memoryRegion(start: 0x2000, length: 0x1000), owner: g1, reserved: false, sharedWith: [], users: [:],
                        revocationPending: false),
            LedgerEntry(resource: .eventfd(3), owner: g2, reserved: false, sharedWith: [g1, g3], users: [g1: 1, g3: 2],
                        revocationPending: true),
        ])
        #expect(ledger.dump().last?.description == "eventfd[3] owner=dom2 shared=dom1,dom3 users=dom1×1,dom3×2 revocation-pending")
        #expect(ledger.dumpText() == """
            RESOURCE                       OWNER  RESERVED  SHARED-WITH  USERS          REVOCATION
            virtualFunction[0]             dom0   yes       -            -              -
            memoryRegion[0x1000..<0x2000]  dom3   no        -            -              -
            memoryRegion[0x2000..<0x3000]  dom1   no        -            -              -
            eventfd[3]                     dom2   no        dom1,dom3    dom1×1,dom3×2  pending

            """)
        #expect(ledger.dumpJSONLines() == [
            #"{"resource":"virtualFunction[0]","kind":"virtualFunction","start":0,"end":1,"owner":0,"ownerName":"dom0","reserved":true,"sharedWith":[],"users":{},"revocationPending":false}"#,
            #"{"resource":"memoryRegion[0x1000..<0x2000]","kind":"memoryRegion","start":4096,"end":8192,"owner":3,"ownerName":"dom3","reserved":false,"sharedWith":[],"users":{},"revocationPending":false}"#,
            #"{"resource":"memoryRegion[0x2000..<0x3000]","kind":"memoryRegion","start":8192,"end":12288,"owner":1,"ownerName":"dom1","reserved":false,"sharedWith":[],"users":{},"revocationPending":false}"#,
            #"{"resource":"eventfd[3]","kind":"eventfd","start":3,"end":4,"owner":2,"ownerName":"dom2","reserved":false,"sharedWith":[1,3],"users":{"1":1,"3":2},"revocationPending":true}"#,
        ])
    }

    @Test("GHT-LED-08: an empty ledger dumps a header and no claims; JSON strings escape quotes, backslashes and controls")
    func dumpEdges() {
        let ledger = ResourceLedger()
        #expect(ledger.dump().isEmpty && ledger.dumpJSONLines().isEmpty)
        #expect(ledger.dumpText() == "RESOURCE  OWNER  RESERVED  SHARED-WITH  USERS  REVOCATION\n")
        #expect(JSONLine.quoted("a\"b\\c\nd\u{1}e\u{1F}é") == #""a\"b\\c\nd\u0001e\u001fé""#)
    }
}
