import Testing
import VirtioScheduler

@Test("Domain 0 is the back-end, every other domain a guest")
func domainNames() {
    #expect(DomainID.backEnd == DomainID(0))
    #expect(!DomainID.backEnd.isGuest)
    #expect(DomainID(3).isGuest)
    #expect(DomainID(2) < DomainID(3))
}
