// The embedder's surface beyond the device protocol (Spec/vhost-user.md §6, GHT-EMB): the
// configuration space read by window, the protocol features a back-end offers, serving until
// a signal, and the back-end's log. Named re-exports, as in VirtioGrant.swift.

// A configuration space read by offset and size (GET_CONFIG), and why a window is refused.
@_exported import struct VirtioTransport.ConfigurationSpace
@_exported import enum VirtioTransport.ConfigurationSpaceError

// Serving until SIGINT/SIGTERM (BackEnd.serveUntilSignal) and ending it from a thread.
@_exported import struct VirtioTransport.ServeOutcome
@_exported import class VirtioTransport.ServeStop

// The log: levels, events, records and the sinks they go to.
@_exported import enum VirtioTransport.LogLevel
@_exported import enum VirtioTransport.LogEvent
@_exported import struct VirtioTransport.LogRecord
@_exported import protocol VirtioTransport.LogSink
@_exported import struct VirtioTransport.StandardErrorLogSink
@_exported import struct VirtioTransport.ClosureLogSink
@_exported import class VirtioTransport.CollectingLogSink
@_exported import struct VirtioSystem.WallClockTime
