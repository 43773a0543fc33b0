import Testing

@_spi(Locking) @testable import VietnameseAIConcurrency

#if canImport(Glibc)
  import Glibc
#endif

@Suite("Locked")
struct LockedTests {
  @Test("under the Thread Sanitizer the lock annotations are found, and not otherwise")
  func annotationsFollowTheRuntime() {
    #if canImport(Glibc)
      let underTSan = dlsym(dlopen(nil, RTLD_NOW), "__tsan_init") != nil
      #expect((ThreadSanitizer.annotations != nil) == underTSan)
    #endif
  }

  @Test("contended increments from many tasks are all counted")
  func contention() async {
    let counter = Locked(0)
    let box = LockedBox(counter)
    await withTaskGroup(of: Void.self) { group in
      for _ in 0..<8 {
        group.addTask {
          for _ in 0..<10_000 { box.locked.withLock { $0 += 1 } }
        }
      }
    }
    #expect(box.locked.withLock { $0 } == 80_000)
  }
}

private final class LockedBox: Sendable {
  let locked: Locked<Int>
  init(_ locked: consuming Locked<Int>) { self.locked = locked }
}
