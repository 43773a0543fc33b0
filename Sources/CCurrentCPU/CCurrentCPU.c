#define _GNU_SOURCE
#include "CCurrentCPU.h"

#if defined(__linux__)
#include <sched.h>
#endif

int CCurrentCPU_current(void) {
#if defined(__linux__)
  int cpu = sched_getcpu();
  return cpu < 0 ? 0 : cpu;
#else
  return 0;
#endif
}
