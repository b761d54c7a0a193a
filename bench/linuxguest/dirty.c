/* The workload of the benchmark's Linux guest (bench/linuxguest): fill a working set of the
 * guest's memory, then dirty its pages at a set rate, round-robin, for ever.
 *
 *     dirty RATE_MIB_S [SIZE_MIB]
 *
 * SIZE_MIB 0 (the default) takes the memory the kernel calls available, less a reserve for the
 * kernel and busybox. Every page of the working set gets one non-zero word first, so that the
 * migration has to send the whole page (QEMU sends a page that was never written as a few
 * bytes). Then each write goes to the next page: the rate is a rate of distinct 4 KiB pages, as
 * the engine's pre-copy model counts it, as long as a pre-copy round lasts less than the working
 * set takes to go round.
 *
 * Each write first checks what the page holds against what the previous pass wrote there, so a
 * page that came through a migration wrong is reported ("dirty: CORRUPT ..."). Once a second a
 * status line tells what was done: the test reads it from the serial console (a pty that drops
 * what nobody reads, hence the repetition). The pace is kept against the clock: a vCPU that was
 * held up (software emulation on a busy machine) catches up, by at most a tenth of a second of
 * writes, so a long pause (the stop-and-copy) gives no burst afterwards. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define PAGE 4096UL
#define RESERVE_MIB 8 /* left to the kernel and busybox when SIZE_MIB is 0 */
#define TICK_NS 2000000L /* 2 ms between bursts of writes */

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* a /proc/meminfo figure in MiB, e.g. "MemAvailable" */
static long meminfo_mib(const char *name) {
    FILE *f = fopen("/proc/meminfo", "r");
    char line[128];
    long kib = 0;
    size_t n = strlen(name);
    if (!f)
        return 0;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, name, n) == 0 && line[n] == ':') {
            kib = atol(line + n + 1);
            break;
        }
    fclose(f);
    return kib / 1024;
}

/* what pass `pass` writes into page `i`: never zero */
static uint64_t mark(uint64_t pass, uint64_t i) { return (pass << 32) ^ (i + 1) ^ 0x5a5a000000000000ULL; }

int main(int argc, char **argv) {
    double rate = argc > 1 ? atof(argv[1]) : 0;
    long size = argc > 2 ? atol(argv[2]) : 0;
    if (size <= 0)
        size = meminfo_mib("MemAvailable") - RESERVE_MIB;
    if (size < 1) {
        printf("dirty: no memory to work in\n");
        return 1;
    }
    uint64_t pages = (uint64_t)size * 1024 * 1024 / PAGE;
    unsigned char *mem = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) {
        printf("dirty: cannot map %ld MiB\n", size);
        return 1;
    }
    double t0 = now();
    for (uint64_t i = 0; i < pages; i++)
        *(volatile uint64_t *)(mem + i * PAGE) = mark(0, i);
    printf("dirty: filled %ld MiB in %.2f s; MemTotal %ld MiB, MemFree %ld MiB\n", size, now() - t0,
           meminfo_mib("MemTotal"), meminfo_mib("MemFree"));
    fflush(stdout);

    double per_s = rate * 1024 * 1024 / PAGE; /* pages a second */
    uint64_t next = 0, pass = 1, written = 0, corrupt = 0;
    double start = now(), last_report = start, due = 0;
    uint64_t written_at_report = 0;
    for (;;) {
        double t = now();
        due += per_s * (t - start);
        start = t;
        if (due > per_s / 10)
            due = per_s / 10; /* catch up at most a tenth of a second */
        while (due >= 1) {
            uint64_t *word = (uint64_t *)(mem + next * PAGE);
            if (*word != mark(pass - 1, next)) {
                if (corrupt++ < 10)
                    printf("dirty: CORRUPT page %llu pass %llu\n", (unsigned long long)next,
                           (unsigned long long)pass);
            }
            *word = mark(pass, next);
            written++;
            due -= 1;
            if (++next == pages) {
                next = 0;
                pass++;
            }
        }
        if (t - last_report >= 1.0) {
            double mib_s = (written - written_at_report) * PAGE / 1048576.0 / (t - last_report);
            printf("dirty: ready size=%ld MiB rate=%.1f MiB/s measured=%.1f MiB/s pages=%llu corrupt=%llu\n", size,
                   rate, mib_s, (unsigned long long)written, (unsigned long long)corrupt);
            fflush(stdout);
            last_report = t;
            written_at_report = written;
        }
        struct timespec tick = {0, TICK_NS};
        nanosleep(&tick, NULL);
    }
}
