#if canImport(Glibc)
import Glibc
#endif

/// One flat JSON object printed on one line: the output format of every benchmark.
struct JSONLine {
    private var fields: [String] = []

    mutating func add(_ key: String, _ value: String) { fields.append("\"\(key)\":\"\(Self.escape(value))\"") }
    mutating func add(_ key: String, _ value: Int) { fields.append("\"\(key)\":\(value)") }
    mutating func add(_ key: String, _ value: UInt64) { fields.append("\"\(key)\":\(value)") }
    mutating func add(_ key: String, _ value: Bool) { fields.append("\"\(key)\":\(value)") }
    mutating func add(_ key: String, _ value: Double, decimals: Int = 0) { fields.append("\"\(key)\":\(Self.format(value, decimals: decimals))") }

    var text: String { "{" + fields.joined(separator: ",") + "}" }

    /// Writes the line to standard output with one unbuffered write, so that lines from several
    /// threads never interleave and a parent reading the pipe sees each line as it happens.
    func emit() {
        var line = text + "\n"
        line.withUTF8 { bytes in
            var done = 0
            while done < bytes.count {
                let n = Glibc.write(1, bytes.baseAddress! + done, bytes.count - done)
                if n > 0 { done += n } else if n < 0 && errno == EINTR { continue } else { break }
            }
        }
    }

    static func escape(_ s: String) -> String {
        var out = ""
        for c in s.unicodeScalars {
            switch c {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            default:
                if c.value < 0x20 { out += "\\u00" + (c.value < 16 ? "0" : "") + String(c.value, radix: 16) } else { out.unicodeScalars.append(c) }
            }
        }
        return out
    }

    /// Formats without Foundation: fixed decimals, rounding half away from zero.
    static func format(_ value: Double, decimals: Int) -> String {
        guard value.isFinite else { return "null" }
        var scale = 1.0
        for _ in 0..<decimals { scale *= 10 }
        let scaled = (abs(value) * scale).rounded()
        let negative = value < 0 && scaled != 0
        let whole = UInt64(scaled / scale)
        var text = String(whole)
        if decimals > 0 {
            let frac = UInt64(scaled - Double(whole) * scale)
            var f = String(frac)
            while f.count < decimals { f = "0" + f }
            text += "." + f
        }
        return (negative ? "-" : "") + text
    }
}
