/* Overflow-checked size arithmetic for everything computed from untrusted file contents. */
#ifndef EDGELLM_CORE_CHECKED_MATH_H
#define EDGELLM_CORE_CHECKED_MATH_H

#include <stdbool.h>
#include <stdint.h>

/* Each returns false (and leaves *out unspecified) when the exact result does not fit. */
static inline bool ellm_add_u64(uint64_t a, uint64_t b, uint64_t *out)
{
    return !__builtin_add_overflow(a, b, out);
}

static inline bool ellm_mul_u64(uint64_t a, uint64_t b, uint64_t *out)
{
    return !__builtin_mul_overflow(a, b, out);
}

/* Rounds up to a multiple of align (align > 0). */
static inline bool ellm_align_up_u64(uint64_t v, uint64_t align, uint64_t *out)
{
    uint64_t rem = v % align;
    if (rem == 0) {
        *out = v;
        return true;
    }
    return ellm_add_u64(v, align - rem, out);
}

#endif
