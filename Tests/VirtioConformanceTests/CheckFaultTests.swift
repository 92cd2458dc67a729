import Testing
import VirtioConformance
import VirtioSystem

/// A deliberately faulty back-end is caught by each class of check.
extension CheckerTests {
    @Test("GHT-CHK-07, GHT-CHK-03: used ids never made available fail, with the used element and the transcript as evidence", .timeLimit(.minutes(1)))
    func badUsedIDIsCaught() {
        let results = CheckSupport.run(CheckSupport.faulty(.badUsedID), "ring-used-id-len")
        let r = CheckSupport.result(results, "ring-used-id-len")
        #expect(r?.outcome == .fail)
        #expect(r?.evidence.contains("USD-DEF-02: used element id 1 is not a head in flight") == true, "\(r?.evidence ?? "")")
        #expect(r?.evidence.contains("→ setMemoryTable") == true && r?.evidence.contains("rule (USD-DEF-02") == true)
    }

    @Test("GHT-CHK-08: a used length beyond the chain's writable bytes fails", .timeLimit(.minutes(1)))
    func longUsedLengthIsCaught() {
        let results = CheckSupport.run(CheckSupport.faulty(.longUsedLength), "blk-get-id")
        #expect(results.first?.outcome == .fail)
        #expect(results.first?.evidence.contains("USD-DEV-02: used length 121 of head 0 exceeds the chain's writable capacity 21") == true,
                "\(results.first?.evidence ?? "")")
    }

    @Test("GHT-CHK-09, GHT-CHK-02: a back-end that dies on a nested indirect table is a crash of that case only, with its signal", .timeLimit(.minutes(1)))
    func crashIsCaught() {
        let results = CheckSupport.run(CheckSupport.faulty(.crashOnNestedIndirect), "indirect")
        #expect(results.map(\.name) == ["ring-indirect", "hostile-nested-indirect", "hostile-indirect-too-long"])
        #expect(results.map(\.outcome) == [.pass, .crash, .pass], "\(CheckSupport.summary(results))")
        #expect(results[1].evidence.contains("the back-end process ended: signaled("), "\(results[1].evidence)")
        #expect(results[1].evidence.contains("nested indirect table"), "the process's own output is in the evidence")
    }

    @Test("GHT-CHK-10: a read past the capacity answered OK fails blk-capacity", .timeLimit(.minutes(1)))
    func capacityIsCaught() {
        let faulty = CheckSupport.run(CheckSupport.faulty(.noCapacityCheck), "blk-capacity")
        #expect(faulty.first?.outcome == .fail)
        #expect(faulty.first?.evidence.contains("capacity 2048: status 0, IOERR (1) expected") == true, "\(faulty.first?.evidence ?? "")")
        let clean = CheckSupport.run(CheckSupport.faulty(.none), "blk-capacity")
        #expect(clean.first?.outcome == .pass, "\(CheckSupport.summary(clean))")
    }

    @Test("GHT-CHK-05, GHT-CHK-06: a back-end that never answers hangs each case within the bound, and is killed and cleaned up", .timeLimit(.minutes(1)))
    func silentBackEndHangs() {
        let start = SystemClock.monotonic.milliseconds
        let results = CheckSupport.run(CheckSupport.faulty(.silent), "vu-get-features,blk-get-id", timeout: 300)
        let elapsed = SystemClock.monotonic.milliseconds - start
        #expect(results.map(\.name) == ["vu-get-features", "blk-get-id"])
        #expect(results.allSatisfy { $0.outcome == .hang })
        #expect(results.allSatisfy { $0.milliseconds < 1500 }, "\(results.map(\.milliseconds))")
        #expect(elapsed < 5000)
        #expect(results[0].evidence.contains("no answer: the reply to getFeatures within 300 ms"), "\(results[0].evidence)")
        #expect(CheckSupport.checkerFilesOpen().isEmpty, "\(CheckSupport.checkerFilesOpen())")
    }

    @Test("GHT-CHK-13: a case needing a feature the back-end does not offer is n/a with the reason", .timeLimit(.minutes(1)))
    func notOfferedIsNotApplicable() {
        let results = CheckSupport.run(CheckSupport.faulty(.none), "ring-event-idx")
        #expect(results.first?.outcome == .notApplicable)
        #expect(results.first?.evidence == "EVENT_IDX not offered")
    }
}
