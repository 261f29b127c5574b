#define _POSIX_C_SOURCE 200809L
#include "model/profile.h"

#include <time.h>

double ellm_profile_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}
