import Testing

extension Tag {
    @Tag static var grants: Self
    @Tag static var hostile: Self
}
