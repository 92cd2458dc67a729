#if canImport(Glibc)
import Glibc
#endif

/// The process environment, read once per call (`getenv`).
public enum Environment {
    /// The value of the variable `name`, or nil when it is not set.
    public static func value(_ name: String) -> String? {
        guard let raw = getenv(name) else { return nil }
        return String(cString: raw)
    }
}
