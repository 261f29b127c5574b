/* Finding NaN and infinity in float data: what a broken model file or a computation that
 * overflowed leaves behind, which converters must not write and evaluation must not hand out. */
#ifndef EDGELLM_CORE_FINITE_H
#define EDGELLM_CORE_FINITE_H

#include <math.h>
#include <stdint.h>

/* Index of the first NaN or infinite value among v[0, n), or -1 when all are finite. */
static inline int64_t ellm_first_nonfinite(const float *v, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(v[i]))
            return i;
    return -1;
}

#endif
