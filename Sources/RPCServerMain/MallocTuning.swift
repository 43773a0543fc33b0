#if canImport(Glibc)
  import Glibc
#endif

/// Keeps glibc's allocator from handing freed memory back to the kernel at the rate frames
/// come and go.
///
/// A connection's outgoing and incoming buffers live for one read burst. With frames of a few
/// KiB, a burst's buffer is tens to hundreds of KiB: at glibc's defaults such a buffer is
/// either mapped and unmapped on its own or, freed at the top of a thread's arena, trimmed
/// off with `madvise`. Either way the next buffer of the same size faults its pages back in
/// one by one, and the trim interrupts the other cores to flush their TLBs.
///
/// This raises the size below which allocations come from the arenas (16 MiB) and the free
/// space an arena keeps before trimming (64 MiB), so the memory a process has used for
/// buffers stays mapped for the next ones; a process that goes quiet keeps at most that much
/// free space per arena. Process-wide, so the executable sets it once at startup, never the
/// server library. Elsewhere than glibc it does nothing.
enum MallocTuning {
  static func keepFreedMemoryForReuse() {
    #if canImport(Glibc)
      // `mallopt` is declared in <malloc.h>, which the Glibc module does not export; its
      // parameter numbers are glibc's stable ABI.
      typealias Mallopt = @convention(c) (Int32, Int32) -> Int32
      guard let symbol = dlsym(dlopen(nil, RTLD_NOW), "mallopt") else { return }
      let mallopt = unsafeBitCast(symbol, to: Mallopt.self)
      let trimThreshold: Int32 = -1  // M_TRIM_THRESHOLD
      let mmapThreshold: Int32 = -3  // M_MMAP_THRESHOLD
      _ = mallopt(mmapThreshold, 16 << 20)
      _ = mallopt(trimThreshold, 64 << 20)
    #endif
  }
}
