// The one import of a device author: `import VirtioGrant` gives exactly the device API and
// what serving a device needs, nothing of the OS layer, the vhost-user codec or the rings'
// internals. Each re-export is named, so a new public type elsewhere does not leak in here
// by accident (ARCHITECTURE.md, "Modules"). Tests of a device may import the modules
// underneath for the harnesses (VirtioConformance) and front-ends (VirtioTransport).

// The device protocol and the requests it processes (DESIGN §4).
@_exported import protocol VirtioTransport.VirtioDevice
@_exported import struct VirtioTransport.RequestBatch
@_exported import class VirtioTransport.QueueDoorbell
@_exported import struct VirtioTransport.StagedRequest
@_exported import struct VirtioTransport.StagedReader
@_exported import protocol VirtioTransport.LittleEndianReading

// The bytes of a request: readers and writers over its resolved fragments, and the feature
// bits a device offers (VIRTIO 1.2 §2.2, §6).
@_exported import struct VirtioCore.FragmentReader
@_exported import struct VirtioCore.FragmentWriter
@_exported import struct VirtioCore.HostRange
@_exported import struct VirtioCore.VirtioFeatures
@_exported import struct VirtioCore.DeviceStatus
@_exported import enum VirtioCore.VirtqueueError

// Serving: the back-end a device is embedded in, its options and what it reports.
@_exported import class VirtioTransport.BackEnd
@_exported import struct VirtioTransport.BackEndConfiguration
@_exported import enum VirtioTransport.SessionEnd
@_exported import struct VirtioTransport.SessionReport
@_exported import class VirtioTransport.QueueStatistics

// What devices commonly need from the OS: a backing file (blk), randomness (rng), and the
// error both throw.
@_exported import class VirtioSystem.StorageFile
@_exported import enum VirtioSystem.Entropy
@_exported import struct VirtioSystem.SystemError
