import VirtioFuzzTargets

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzVhostUser(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    VhostUserTarget.run(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}
