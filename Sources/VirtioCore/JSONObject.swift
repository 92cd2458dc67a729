/// A flat JSON object as ``JSONLine`` writes it and the other processes of the demo, the
/// benchmarks and the tests print it: string, number, boolean and null values, no nesting.
/// Anything else is rejected (`nil`), so a child that prints garbage fails the check that
/// reads it instead of being misread.
public struct JSONObject: Sendable, Equatable {
    public enum Value: Sendable, Equatable {
        case string(String)
        case number(Double)
        case bool(Bool)
        case null
    }

    public private(set) var values: [String: Value] = [:]

    /// Parses one line; `nil` unless it is exactly one flat object.
    public init?(parsing text: String) {
        var scalars = Array(text.unicodeScalars)[...]
        func skipSpace() { while let c = scalars.first, c == " " || c == "\t" || c == "\r" { scalars.removeFirst() } }
        func take(_ c: Unicode.Scalar) -> Bool {
            skipSpace()
            guard scalars.first == c else { return false }
            scalars.removeFirst()
            return true
        }
        func string() -> String? {
            guard take("\"") else { return nil }
            var out = ""
            while let c = scalars.popFirst() {
                switch c {
                case "\"": return out
                case "\\":
                    switch scalars.popFirst() {
                    case "\"": out += "\""
                    case "\\": out += "\\"
                    case "/": out += "/"
                    case "n": out += "\n"
                    case "t": out += "\t"
                    case "r": out += "\r"
                    case "b": out += "\u{8}"
                    case "f": out += "\u{C}"
                    case "u":
                        let hex = String(String.UnicodeScalarView(scalars.prefix(4)))
                        guard hex.count == 4, let v = UInt32(hex, radix: 16), let s = Unicode.Scalar(v) else { return nil }
                        scalars.removeFirst(4)
                        out.unicodeScalars.append(s)
                    default: return nil
                    }
                default: out.unicodeScalars.append(c)
                }
            }
            return nil
        }
        func value() -> Value? {
            skipSpace()
            switch scalars.first {
            case "\"": return string().map { .string($0) }
            case "t", "f", "n":
                for (word, v) in [("true", Value.bool(true)), ("false", .bool(false)), ("null", .null)]
                where String(String.UnicodeScalarView(scalars.prefix(word.count))) == word {
                    scalars.removeFirst(word.count)
                    return v
                }
                return nil
            default:
                var text = ""
                while let c = scalars.first, "+-.0123456789eE".unicodeScalars.contains(c) { text.unicodeScalars.append(scalars.removeFirst()) }
                return Double(text).map { .number($0) }
            }
        }
        guard take("{") else { return nil }
        if !take("}") {
            repeat {
                guard let key = string(), take(":"), let v = value() else { return nil }
                values[key] = v
            } while take(",")
            guard take("}") else { return nil }
        }
        skipSpace()
        guard scalars.isEmpty else { return nil }
    }

    public func string(_ key: String) -> String? {
        if case .string(let s) = values[key] { return s }
        return nil
    }

    public func number(_ key: String) -> Double? {
        if case .number(let n) = values[key] { return n }
        return nil
    }

    public func int(_ key: String) -> Int? { number(key).flatMap { Int(exactly: $0) } }

    public func bool(_ key: String) -> Bool? {
        if case .bool(let b) = values[key] { return b }
        return nil
    }
}
