/// A command-line argument the user got wrong: reported with the usage, exit status 2.
struct UsageError: Error, CustomStringConvertible {
    var description: String
}

/// `--name value` options and bare flags, parsed strictly: an unknown option, a missing value or
/// a value of the wrong kind is a ``UsageError``, never a crash.
struct Options {
    /// Every value given for each option, in order (most options take the last).
    private var values: [String: [String]] = [:]
    private var flags: Set<String> = []
    private(set) var positional: [String] = []

    /// Parses `arguments`, accepting only the named options (which take a value) and flags.
    init(_ arguments: ArraySlice<String>, options: Set<String>, flags allowedFlags: Set<String> = []) throws(UsageError) {
        var i = arguments.startIndex
        while i < arguments.endIndex {
            let arg = arguments[i]
            if arg.hasPrefix("--") {
                let name = String(arg.dropFirst(2))
                if allowedFlags.contains(name) {
                    flags.insert(name)
                } else if options.contains(name) {
                    i += 1
                    guard i < arguments.endIndex else { throw UsageError(description: "option --\(name) needs a value") }
                    values[name, default: []].append(arguments[i])
                } else {
                    throw UsageError(description: "unknown option \(arg)")
                }
            } else {
                positional.append(arg)
            }
            i += 1
        }
    }

    func flag(_ name: String) -> Bool { flags.contains(name) }

    func string(_ name: String) -> String? { values[name]?.last }

    /// Every value of an option that may be repeated (`--guest A --guest B`), in order.
    func strings(_ name: String) -> [String] { values[name] ?? [] }

    /// An integer option within `range`, or `defaultValue` when absent.
    func int(_ name: String, default defaultValue: Int, in range: ClosedRange<Int>) throws(UsageError) -> Int {
        guard let text = string(name) else { return defaultValue }
        guard let value = Int(text), range.contains(value) else {
            throw UsageError(description: "--\(name) must be an integer in \(range.lowerBound)...\(range.upperBound), not '\(text)'")
        }
        return value
    }

    /// A list of integers ("1,32"), each within `range`.
    func ints(_ name: String, default defaultValue: [Int], in range: ClosedRange<Int>) throws(UsageError) -> [Int] {
        guard let text = string(name) else { return defaultValue }
        var result: [Int] = []
        for part in text.split(separator: ",") {
            guard let value = Int(part), range.contains(value) else {
                throw UsageError(description: "--\(name) takes integers in \(range.lowerBound)...\(range.upperBound), not '\(text)'")
            }
            result.append(value)
        }
        guard !result.isEmpty else { throw UsageError(description: "--\(name) needs at least one value") }
        return result
    }

    /// A positive number of seconds.
    func seconds(_ name: String, default defaultValue: Double, max: Double = 3600) throws(UsageError) -> Double {
        guard let text = string(name) else { return defaultValue }
        guard let value = Double(text), value > 0, value <= max else {
            throw UsageError(description: "--\(name) must be a number of seconds in (0, \(Int(max))], not '\(text)'")
        }
        return value
    }

    /// One of `choices`, or `defaultValue` when absent.
    func choice(_ name: String, default defaultValue: String, from choices: [String]) throws(UsageError) -> String {
        guard let text = string(name) else { return defaultValue }
        guard choices.contains(text) else {
            throw UsageError(description: "--\(name) must be one of \(choices.joined(separator: ", ")), not '\(text)'")
        }
        return text
    }
}
