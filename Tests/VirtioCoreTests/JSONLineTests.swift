import Testing
import VirtioCore

@Suite("JSON lines")
struct JSONLineTests {
    @Test("JSONLine writes fields in order; JSONObject reads back what it wrote")
    func roundTrip() throws {
        var nested = JSONLine()
        nested.add("2", 1)
        var line = JSONLine()
        line.add("event", "session \"1\"\t\\")
        line.add("id", 7)
        line.add("big", UInt64.max)
        line.add("ok", true)
        line.add("rate", 0.125, decimals: 2)
        line.add("list", [1, 3])
        line.add("users", nested)
        #expect(line.text == #"{"event":"session \"1\"\t\\","id":7,"big":18446744073709551615,"ok":true,"rate":0.13,"list":[1,3],"users":{"2":1}}"#)
        var flat = JSONLine()
        flat.add("event", "a\u{1}b\r\n")
        flat.add("n", -2.5, decimals: 1)
        flat.add("nan", Double.nan, decimals: 1)
        flat.add("ok", false)
        let read = try #require(JSONObject(parsing: flat.text))
        #expect(read.string("event") == "a\u{1}b\r\n" && read.number("n") == -2.5 && read.values["nan"] == .null && read.bool("ok") == false)
        #expect(JSONObject(parsing: line.text) == nil, "nesting is refused")
    }

    @Test("Strings escape quotes, backslashes and controls; numbers are fixed-point, null when not finite or too large")
    func escapingAndNumbers() {
        #expect(JSONLine.quoted("a\"b\\c\nd\u{1}e\u{1F}é") == #""a\"b\\c\nd\u0001e\u001fé""#)
        #expect(JSONLine.format(1.005, decimals: 0) == "1" && JSONLine.format(-0.0004, decimals: 3) == "0.000")
        #expect(JSONLine.format(2.5, decimals: 0) == "3" && JSONLine.format(-1.25, decimals: 1) == "-1.3")
        #expect(JSONLine.format(.infinity, decimals: 1) == "null" && JSONLine.format(1e30, decimals: 0) == "null")
    }
}
