/* Bit-compatibility of Q4_K, Q5_K, Q6_K with another runtime: loads that runtime's shared
 * library (path in argv[1]; the ggml base library shipped in the npm package
 * @node-llama-cpp/linux-x64) and checks, for random, outlier, zero, constant and negative-only
 * super-blocks:
 *   - blocks its reference quantizer writes decode to the same values with our dequantizer as
 *     with its own (we read its files);
 *   - blocks our quantizer writes decode to the same values with its dequantizer as with ours
 *     (it reads our files);
 *   - our quantizer's squared error is not worse than its reference quantizer's by more than a
 *     few percent (prints both).
 * The library's functions take (source, destination, count) pointers, the same C ABI as ours. */
#include <dlfcn.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant/quant.h"
#include "test_util.h"

typedef void (*to_float_fn)(const void *src, float *dst, int64_t n);
typedef void (*from_float_fn)(const float *src, void *dst, int64_t n);

static uint64_t rng = 0x2545f4914f6cdd1dull;
static float frand(void)
{
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(rng >> 11) * 0x1.0p-53 * 2.0 - 1.0);
}

enum { NB = 96, N = NB * 256 };

static void fill(float *x)
{
    for (int i = 0; i < N; i++) {
        int b = i / 256;
        float g = (frand() + frand() + frand()) * 0.7f;
        x[i] = b % 8 == 0   ? 0.0f
               : b % 8 == 1 ? -1.75f
               : b % 8 == 2 ? -fabsf(g) - 0.1f
               : b % 8 == 3 ? g * (i % 37 == 0 ? 15.0f : 1.0f)
               : b % 8 == 4 ? g * 1e-3f
               : b % 8 == 5 ? fabsf(g) + 2.0f
                            : g;
    }
}

/* Largest difference between two decodings, relative to the largest value: the two runtimes
 * may round a*q - b differently in the last bit (fused multiply-add), nothing more. */
static double decode_diff(const float *a, const float *b)
{
    double worst = 0;
    for (int blk = 0; blk < NB; blk++) {
        double amax = 0;
        for (int i = 0; i < 256; i++)
            amax = fmax(amax, fabs(a[blk * 256 + i]));
        for (int i = 0; i < 256; i++) {
            double d = fabs((double)a[blk * 256 + i] - b[blk * 256 + i]);
            if (d > 0)
                worst = fmax(worst, amax > 0 ? d / amax : INFINITY);
        }
    }
    return worst;
}

static double sq_error(const float *x, const float *y)
{
    double s = 0;
    for (int i = 0; i < N; i++)
        s += ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
    return s;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: ggml_kquant_crosscheck LIBGGML-BASE.so\n");
        return 2;
    }
    void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        fprintf(stderr, "cannot load %s: %s\n", argv[1], dlerror());
        return 1;
    }
    static const struct {
        ellm_type type;
        const char *to, *from;
    } kinds[] = {{ELLM_TYPE_Q4_K, "dequantize_row_q4_K", "quantize_row_q4_K_ref"},
                 {ELLM_TYPE_Q5_K, "dequantize_row_q5_K", "quantize_row_q5_K_ref"},
                 {ELLM_TYPE_Q6_K, "dequantize_row_q6_K", "quantize_row_q6_K_ref"}};
    static float x[N], ours[N], theirs[N];
    static uint8_t q[N];
    fill(x);
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        const char *name = ellm_type_name(kinds[k].type);
        to_float_fn their_to = (to_float_fn)(uintptr_t)dlsym(lib, kinds[k].to);
        from_float_fn their_from = (from_float_fn)(uintptr_t)dlsym(lib, kinds[k].from);
        CHECK_MSG(their_to && their_from, "%s: %s / %s not in the library", name, kinds[k].to,
                  kinds[k].from);
        if (!their_to || !their_from)
            continue;
        /* Their blocks, both decoders. */
        memset(q, 0, sizeof q);
        their_from(x, q, N);
        ellm_dequantize_row(kinds[k].type, q, ours, N);
        their_to(q, theirs, N);
        double d1 = decode_diff(theirs, ours);
        CHECK_MSG(d1 <= 1e-6, "%s: their blocks decode differently with our dequantizer (%g)", name,
                  d1);
        double their_err = sq_error(x, theirs);
        /* Our blocks, both decoders. */
        memset(q, 0, sizeof q);
        ellm_quantize_row(kinds[k].type, x, q, N);
        ellm_dequantize_row(kinds[k].type, q, ours, N);
        their_to(q, theirs, N);
        double d2 = decode_diff(ours, theirs);
        CHECK_MSG(d2 <= 1e-6, "%s: our blocks decode differently with their dequantizer (%g)", name,
                  d2);
        double our_err = sq_error(x, ours);
        printf("%s: decoders agree (largest relative difference %.2g / %.2g); rms error ours %.5g, "
               "theirs %.5g\n",
               name, d1, d2, sqrt(our_err / N), sqrt(their_err / N));
        CHECK_MSG(our_err <= 1.05 * their_err, "%s: our quantizer's error %.5g vs theirs %.5g",
                  name, our_err, their_err);
    }
    dlclose(lib);
    fflush(stdout);
    return test_finish("ggml_kquant_crosscheck");
}
