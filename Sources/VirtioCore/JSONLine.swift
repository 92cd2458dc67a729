/// One JSON object written on one line: the output format of the commands, the benchmarks and
/// the ledger's dump (one writer, so every line escapes and formats numbers the same way).
///
/// Fields keep the order they were added in. Values are strings, integers, booleans, numbers
/// with a fixed count of decimals (non-finite numbers become `null`), arrays of integers and
/// nested objects. No Foundation, no OS call: writing the line out is the caller's business
/// (`StandardStream.writeLine` in the System layer writes it with one `write`).
public struct JSONLine: Sendable, Equatable, CustomStringConvertible {
    private var fields: [String] = []

    public init() {}

    public mutating func add(_ key: String, _ value: String) { append(key, Self.quoted(value)) }
    public mutating func add(_ key: String, _ value: Int) { append(key, String(value)) }
    public mutating func add(_ key: String, _ value: UInt64) { append(key, String(value)) }
    public mutating func add(_ key: String, _ value: Bool) { append(key, String(value)) }
    /// A number with `decimals` fixed decimals (see ``format(_:decimals:)``).
    public mutating func add(_ key: String, _ value: Double, decimals: Int = 0) { append(key, Self.format(value, decimals: decimals)) }
    /// An array of integers, `[1,2]`.
    public mutating func add(_ key: String, _ values: [Int]) { append(key, "[" + values.map(String.init).joined(separator: ",") + "]") }
    /// A nested object.
    public mutating func add(_ key: String, _ object: JSONLine) { append(key, object.text) }

    /// Whether no field has been added.
    public var isEmpty: Bool { fields.isEmpty }

    /// The object's text, without a newline: `{"key":value,...}`.
    public var text: String { "{" + fields.joined(separator: ",") + "}" }

    public var description: String { text }

    private mutating func append(_ key: String, _ value: String) { fields.append(Self.quoted(key) + ":" + value) }

    /// `s` as a JSON string literal (RFC 8259 §7): quotes, backslashes and control characters
    /// escaped (`\n`, `\r`, `\t` by name, the others as `\u00XX`), the rest as is (JSON text
    /// is UTF-8).
    public static func quoted(_ s: String) -> String {
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

    /// `value` with exactly `decimals` decimals, rounding half away from zero, without
    /// Foundation; `null` for an infinite or NaN value (JSON has no such numbers) and for
    /// one of 2^64 or more at that scale.
    public static func format(_ value: Double, decimals: Int) -> String {
        var scale = 1.0
        for _ in 0..<decimals { scale *= 10 }
        // Beyond 2^64 the whole part has no UInt64; such a number is no measurement either.
        guard value.isFinite, abs(value) * scale < 0x1p64 else { return "null" }
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
