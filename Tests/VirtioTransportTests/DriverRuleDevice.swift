import Testing
@testable import VirtioTransport
import VirtioConformance

/// The suite's scripted back-end for the front-end's rules: the public one of `VirtioConformance`.
typealias DriverRuleDevice = ScriptedVhostUserBackEnd

extension ScriptedVhostUserBackEnd {
    /// A front-end over a fresh scripted device, not yet initialized.
    static func frontEnd(_ script: Script = Script(), configuration: FrontEndConfiguration = .small) throws -> (FrontEnd, DriverRuleDevice) {
        let (device, socket) = try start(script)
        try socket.setReceiveTimeout(milliseconds: configuration.timeoutMilliseconds)
        return (try FrontEnd(socket: socket, configuration: configuration), device)
    }
}

extension FrontEndConfiguration {
    /// A front-end small enough to set up many times in one test.
    static var small: FrontEndConfiguration {
        var c = FrontEndConfiguration()
        c.queueSize = 16
        c.maxOutstanding = 4
        c.maxRequestSize = 4096
        c.maxReplySize = 4096
        c.timeoutMilliseconds = 2000
        return c
    }
}
