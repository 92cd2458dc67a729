import VirtioFuzzTargets

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzInflightRecovery(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    InflightRecoveryTarget.run(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}
