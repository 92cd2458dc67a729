import VirtioConformance

/// The suite's hand-driven vhost-user front-end: the public scripted front-end of
/// `VirtioConformance`.
typealias RawVhostUserClient = ScriptedVhostUserFrontEnd
