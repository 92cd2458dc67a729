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

/// The calling process: its ID and its end.
public enum CurrentProcess {
    /// The process ID (`getpid`).
    public static var id: Int32 { getpid() }

    /// Ends the process with `status` (`exit`: atexit handlers and stdio buffers run).
    public static func exit(_ status: Int32) -> Never { Glibc.exit(status) }
}
