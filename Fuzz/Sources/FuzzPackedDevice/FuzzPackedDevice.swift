import VirtioFuzzTargets

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPackedDevice(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    PackedDeviceTarget.run(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}
