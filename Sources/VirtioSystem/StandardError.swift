#if canImport(Glibc)
import Glibc
#endif

/// The process's standard error as a `TextOutputStream` (`print(..., to: &stderr)`): one
/// unbuffered write(2) per call, so lines of several threads do not interleave mid-line.
public struct StandardError: TextOutputStream {
    public init() {}

    public mutating func write(_ string: String) {
        var text = string
        text.withUTF8 { bytes in
            var offset = 0
            while offset < bytes.count {
                let n = Glibc.write(2, bytes.baseAddress! + offset, bytes.count - offset)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { return }   // nowhere left to report a failing stderr
                offset += n
            }
        }
    }
}

/// The process environment, read once per call (`getenv`).
public enum Environment {
    /// The value of the variable `name`, or nil when it is not set.
    public static func value(_ name: String) -> String? {
        guard let raw = getenv(name) else { return nil }
        return String(cString: raw)
    }
}
