// Placeholder: the storage host (see the StorageHost brief). `StorageEngine` is an open instance.
public final class StorageEngine: Sendable {}
