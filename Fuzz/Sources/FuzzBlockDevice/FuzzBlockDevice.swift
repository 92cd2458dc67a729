import VirtioFuzzTargets

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzBlockDevice(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    BlockDeviceTarget.run(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}
