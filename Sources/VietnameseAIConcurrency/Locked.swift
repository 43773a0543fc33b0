public import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// A `Mutex` whose hand-overs the Thread Sanitizer can see.
///
/// On Linux, `Mutex` takes its fast path with an atomic compare-and-exchange compiled into the
/// caller (which TSan sees), but a contended lock is handed from one thread to the next inside
/// the kernel (a priority-inheritance futex, called from the uninstrumented
/// `libswiftSynchronization`). TSan then misses the happens-before edge and reports the
/// protected state as racing with itself. This wrapper tells TSan about the edge: it calls
/// `__tsan_acquire` right after the lock is taken and `__tsan_release` right before it is let
/// go, on the mutex's own address. Outside a TSan build those functions do not exist and the
/// cost is one predictable branch.
///
/// Inlinable, so that the server and client modules get it specialised for their own states:
/// called through its generic entry point, every lock costs generic metadata look-ups. That
/// takes `public`: the compiler does not inline a `package` declaration into another module.
/// It is SPI, not API: only the package's own modules import `@_spi(Locking)`.
@_spi(Locking)
public struct Locked<Value: ~Copyable>: ~Copyable, Sendable {
  @usableFromInline let mutex: Mutex<Value>
  /// Copied from the process-wide lookup so that the hot path reads a stored property rather
  /// than going through a lazily initialised global.
  @usableFromInline let annotations = ThreadSanitizer.annotations

  @inlinable
  public init(_ value: consuming sending Value) {
    mutex = Mutex(value)
  }

  /// Runs `body` with exclusive access to the value.
  @inlinable @inline(__always)
  public borrowing func withLock<Result: ~Copyable, E: Error>(
    _ body: (inout sending Value) throws(E) -> sending Result
  ) throws(E) -> sending Result {
    try mutex.withLock { (value: inout sending Value) throws(E) -> sending Result in
      guard let annotations else { return try body(&value) }
      let address = withUnsafePointer(to: mutex) { UnsafeMutableRawPointer(mutating: $0) }
      annotations.acquire(address)
      defer { annotations.release(address) }
      return try body(&value)
    }
  }
}

/// The Thread Sanitizer's annotation functions, when the process runs under TSan.
@usableFromInline
enum ThreadSanitizer {
  @usableFromInline typealias Annotation = @convention(c) (UnsafeMutableRawPointer?) -> Void

  @usableFromInline
  struct Annotations: Sendable {
    @usableFromInline let acquire: Annotation
    @usableFromInline let release: Annotation
  }

  /// `nil` unless the TSan runtime is loaded.
  @usableFromInline static let annotations: Annotations? = {
    #if canImport(Glibc)
      let process = dlopen(nil, RTLD_NOW)
      guard let acquire = dlsym(process, "__tsan_acquire"), let release = dlsym(process, "__tsan_release")
      else {
        return nil
      }
      return Annotations(
        acquire: unsafeBitCast(acquire, to: Annotation.self),
        release: unsafeBitCast(release, to: Annotation.self)
      )
    #else
      return nil
    #endif
  }()
}
