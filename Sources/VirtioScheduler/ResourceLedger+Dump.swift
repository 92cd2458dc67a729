import VirtioCore

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
            var users = JSONLine()
            for (domain, count) in e.users.sorted(by: { $0.key < $1.key }) { users.add(String(domain.rawValue), count) }
            var line = JSONLine()
            line.add("resource", e.resource.description)
            line.add("kind", e.resource.kind.rawValue)
            line.add("start", e.resource.range.lowerBound)
            line.add("end", e.resource.range.upperBound)
            line.add("owner", Int(e.owner.rawValue))
            line.add("ownerName", e.owner.description)
            line.add("reserved", e.reserved)
            line.add("sharedWith", e.sharedWith.map { Int($0.rawValue) })
            line.add("users", users)
            line.add("revocationPending", e.revocationPending)
            return line.text
        }
    }
}
