/* cpu.h: one spin step, portably (internal to libmpx).
 *
 * mpx__cpu_relax tells the CPU that the caller is spinning on a memory word: `pause` on x86 (it
 * frees the core's pipeline for a sibling hyperthread and avoids the memory-order flush when the
 * word changes), `yield` on AArch64, and elsewhere only a compiler barrier, so that the loop still
 * re-reads memory. It never enters the kernel and never gives up the CPU: loops that may wait
 * longer than a few microseconds must also sched_yield or sleep (see future.c, thread.c).
 *
 * No state; safe from any thread. */
#ifndef MPX_OS_CPU_H
#define MPX_OS_CPU_H

static inline void mpx__cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield" ::: "memory");
#else
  __asm__ __volatile__("" ::: "memory");
#endif
}

#endif
