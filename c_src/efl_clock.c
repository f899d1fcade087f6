/* The tracer's clock: TSC calibration against CLOCK_MONOTONIC, once at
 * load, and its rebase at each session start (efl_clock.h). */
#include <stdio.h>
#include <string.h>

#include "efl_clock.h"

#if defined(__x86_64__)
static int kernel_uses_tsc(void)
{
    char name[64] = "";
    FILE *f = fopen("/sys/devices/system/clocksource/clocksource0/current_clocksource", "r");
    if (f == NULL)
        return 0;
    int ok = fgets(name, sizeof name, f) != NULL && strncmp(name, "tsc", 3) == 0;
    fclose(f);
    return ok;
}

/* A (TSC, monotonic ns) pair read as close together as possible. */
static void sample(int64_t *tsc, int64_t *ns)
{
    int64_t best = INT64_MAX;
    for (int i = 0; i < 5; i++) {
        int64_t a = efl_monotonic_ns();
        int64_t t = (int64_t)__rdtsc();
        int64_t b = efl_monotonic_ns();
        if (b - a < best) {
            best = b - a;
            *tsc = t;
            *ns = a + (b - a) / 2;
        }
    }
}
#endif

void efl_clock_calibrate(struct efl_clock *c)
{
    memset(c, 0, sizeof *c);
#if defined(__x86_64__)
    if (!kernel_uses_tsc())
        return;
    int64_t t1, n1, t2, n2;
    sample(&t1, &n1);
    struct timespec wait = {0, 20000000};
    nanosleep(&wait, NULL);
    sample(&t2, &n2);
    if (t2 <= t1 || n2 <= n1)
        return;
    c->mult = (uint64_t)(((unsigned __int128)(n2 - n1) << 32) / (uint64_t)(t2 - t1));
    c->tsc0 = t2;
    c->ns0 = n2;
    c->use_tsc = c->mult != 0;
#endif
}

void efl_clock_rebase(struct efl_clock *c)
{
#if defined(__x86_64__)
    if (c->use_tsc)
        sample(&c->tsc0, &c->ns0);
#else
    (void)c;
#endif
}
