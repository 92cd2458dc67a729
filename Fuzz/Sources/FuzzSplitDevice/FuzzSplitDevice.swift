import VirtioFuzzTargets

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSplitDevice(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    SplitDeviceTarget.run(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}
