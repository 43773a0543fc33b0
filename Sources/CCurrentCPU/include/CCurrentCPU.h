#ifndef VIETNAMESE_AI_CCURRENTCPU_H
#define VIETNAMESE_AI_CCURRENTCPU_H

// The CPU the calling thread runs on, for state kept per CPU. `sched_getcpu` needs
// _GNU_SOURCE, which a header imported into Swift cannot turn on, so the call lives in the .c
// file. On Linux with glibc 2.35 or later it reads a value the kernel keeps in the thread's
// restartable-sequence area: no system call.

/// The calling thread's CPU number, or 0 where the system cannot tell. The thread may have
/// moved by the time the caller uses it: use it to spread work, never for correctness.
int CCurrentCPU_current(void);

#endif
