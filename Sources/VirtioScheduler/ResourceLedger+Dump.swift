extension ResourceLedger {
    /// Every claim, by kind and then start (GHT-LED-08): what an operator or a test compares
    /// to know who holds what, who maps it and what is on its way out. One consistent
    /// snapshot, taken under the lock.
    public func dump() -> [LedgerEntry] {
        withBook { b in b.claims.all.map(\.entry) }
    }

    /// The dump as a table for people: a header, then one line per claim.
    public func dumpText() -> String {
        let header = ["RESOURCE", "OWNER", "RESERVED", "SHARED-WITH", "USERS", "REVOCATION"]
        let rows = dump().map { e in
            [e.resource.description, e.owner.description, e.reserved ? "yes" : "no",
             e.sharedWith.isEmpty ? "-" : e.sharedWith.map(\.description).joined(separator: ","),
             e.users.isEmpty ? "-" : LedgerError.describe(e.users, separator: ","),
             e.revocationPending ? "pending" : "-"]
        }
        var widths = header.map(\.count)
        for row in rows {
            for (column, field) in row.enumerated() { widths[column] = max(widths[column], field.count) }
        }
        return ([header] + rows).map { row in
            row.enumerated().map { column, field in
                column == row.count - 1 ? field : field + String(repeating: " ", count: widths[column] - field.count)
            }.joined(separator: "  ")
        }.joined(separator: "\n") + "\n"
    }

    /// The dump for programs: one compact JSON object per claim, for instance
    /// `{"resource":"queue[3]","kind":"queue","start":3,"end":4,"owner":1,"ownerName":"guest1",`
    /// `"reserved":false,"sharedWith":[2],"users":{"2":1},"revocationPending":false}`.
    /// Domains are numbers (user keys their decimal text); `end` is exclusive.
    public func dumpJSONLines() -> [String] {
        dump().map { e in
            let shared = e.sharedWith.map { String($0.rawValue) }.joined(separator: ",")
            let users = e.users.sorted { $0.key < $1.key }
                .map { "\"\($0.key.rawValue)\":\($0.value)" }.joined(separator: ",")
            let fields = [
                "\"resource\":" + Self.jsonString(e.resource.description),
                "\"kind\":" + Self.jsonString(e.resource.kind.rawValue),
                "\"start\":\(e.resource.range.lowerBound)",
                "\"end\":\(e.resource.range.upperBound)",
                "\"owner\":\(e.owner.rawValue)",
                "\"ownerName\":" + Self.jsonString(e.owner.description),
                "\"reserved\":\(e.reserved)",
                "\"sharedWith\":[\(shared)]",
                "\"users\":{\(users)}",
                "\"revocationPending\":\(e.revocationPending)",
            ]
            return "{" + fields.joined(separator: ",") + "}"
        }
    }

    /// `s` as a JSON string literal: quotes, backslashes and control characters escaped, the
    /// rest as is (JSON text is UTF-8).
    static func jsonString(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 {
                    let hex = String(scalar.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }
}
