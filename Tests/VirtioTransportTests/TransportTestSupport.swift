import Testing

extension Tag {
    @Tag static var transport: Self
}
