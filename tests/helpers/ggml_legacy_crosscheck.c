/* Bit-compatibility of Q4_1, Q5_0, Q5_1 and IQ4_NL (and the Q8_1 activation blocks) with another
 * runtime: loads that runtime's shared library (path in argv[1]: the ggml base library of the npm
 * package @node-llama-cpp/linux-x64) and, for 32-value blocks of zero, constant, negative-only,
 * outlier, tiny, positive-only, uniform and weight-sized values, checks that
 *   - the blocks its reference quantizer writes decode to the same values with our dequantizer
 *     as with its own (we read its files),
 *   - the blocks our quantizer writes decode to the same values with its dequantizer as with ours
 *     (it reads our files),
 * and that our quantizer's squared error is not above its reference quantizer's by more than a
 * margin. Its functions take (source, destination, count), the same C ABI as ours. */
#include <dlfcn.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant/blocks.h"
#include "quant/quant.h"
#include "test_util.h"

typedef void (*decode_fn)(const void *src, float *dst, int64_t n);
typedef void (*encode_fn)(const float *src, void *dst, int64_t n);

static uint64_t rng = 0x853c49e6748fea9bull;
static float frand(void)
{
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(rng >> 11) * 0x1.0p-53 * 2.0 - 1.0);
}

enum { NB = 1024, N = NB * 32, KINDS = 8 };

static const char *const kind_names[KINDS] = {"zero", "constant", "negative", "outliers",
                                              "tiny", "positive", "uniform",  "weight-sized"};

/* Block b has kind b % KINDS. */
static void fill(float *x)
{
    for (int i = 0; i < N; i++) {
        int b = i / 32;
        float g = (frand() + frand() + frand() + frand()) * 0.5f;
        x[i] = b % KINDS == 0   ? 0.0f
               : b % KINDS == 1 ? 0.375f
               : b % KINDS == 2 ? -fabsf(g) - 0.2f
               : b % KINDS == 3 ? g * (i % 13 == 0 ? 20.0f : 1.0f)
               : b % KINDS == 4 ? g * 2e-4f
               : b % KINDS == 5 ? fabsf(g) + 1.0f
               : b % KINDS == 6 ? frand()
                                : g * 0.02f;
    }
}

/* Largest difference between two decodings relative to the block's largest value: the two may
 * round d * q + m differently in the last bit (or fuse it), nothing more. */
static double decode_diff(const float *a, const float *b)
{
    double worst = 0;
    for (int blk = 0; blk < NB; blk++) {
        double amax = 0;
        for (int i = 0; i < 32; i++)
            amax = fmax(amax, fabs(a[blk * 32 + i]));
        for (int i = 0; i < 32; i++) {
            double d = fabs((double)a[blk * 32 + i] - b[blk * 32 + i]);
            if (d > 0)
                worst = fmax(worst, amax > 0 ? d / amax : INFINITY);
        }
    }
    return worst;
}

static double sq_err(const float *x, const float *y, int kind)
{
    double s = 0;
    for (int i = 0; i < N; i++)
        if (kind < 0 || (i / 32) % KINDS == kind)
            s += ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
    return s;
}

static void *sym(void *lib, const char *name)
{
    void *p = dlsym(lib, name);
    CHECK_MSG(p != NULL, "%s not found in the reference library", name);
    return p;
}

/* Its Q8_1 blocks (half d, half s, 32 int8) against ours: the same quants and scale, and s equal
 * up to roundings (ours multiplies the sum by the stored d, which makes s agree with the
 * activations as they decode). */
static void check_q8_1(void *lib, const float *x)
{
    encode_fn encode = (encode_fn)sym(lib, "quantize_row_q8_1_ref");
    if (!encode)
        return;
    static block_q8_1 theirs[NB], ours[NB];
    encode(x, theirs, N);
    ellm_quantize_row(ELLM_TYPE_Q8_1, x, ours, N);
    int bad = 0, bad_s = 0;
    for (int b = 0; b < NB; b++) {
        bad += theirs[b].d != ours[b].d || memcmp(theirs[b].qs, ours[b].qs, 32) != 0;
        /* Its s is its unrounded d times the sum, ours the stored d times the sum: they differ by
         * the sum times the rounding of d, plus the rounding of each s (half precision: 2^-11
         * relative, 2^-24 apart below 2^-14). */
        int sum = 0;
        for (int j = 0; j < 32; j++)
            sum += ours[b].qs[j];
        double d = ellm_f16_to_f32(ours[b].d);
        double st = ellm_f16_to_f32(theirs[b].s), so = ellm_f16_to_f32(ours[b].s);
        double tol = fabs((double)sum) * fmax(d * 0x1.0p-11, 0x1.0p-25) +
                     2.0 * fmax(fabs(st) * 0x1.0p-11, 0x1.0p-25);
        bad_s += fabs(st - so) > tol;
    }
    CHECK_MSG(bad == 0, "Q8_1: %d blocks differ in d or the quants", bad);
    CHECK_MSG(bad_s == 0, "Q8_1: %d blocks differ in s beyond half-precision rounding", bad_s);
    printf("Q8_1   d and quants identical in %d of %d blocks\n", NB - bad, NB);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: ggml_legacy_crosscheck LIBGGML_BASE.so\n");
        return 2;
    }
    void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        fprintf(stderr, "cannot load %s: %s\n", argv[1], dlerror());
        return 1;
    }
    struct {
        ellm_type type;
        const char *decode, *encode;
        double margin; /* our squared error may exceed its reference quantizer's by this factor */
    } types[] = {
        {ELLM_TYPE_Q4_1, "dequantize_row_q4_1", "quantize_row_q4_1_ref", 1.0},
        {ELLM_TYPE_Q5_0, "dequantize_row_q5_0", "quantize_row_q5_0_ref", 1.0},
        {ELLM_TYPE_Q5_1, "dequantize_row_q5_1", "quantize_row_q5_1_ref", 1.0},
        {ELLM_TYPE_IQ4_NL, "dequantize_row_iq4_nl", "quantize_row_iq4_nl_ref", 1.0},
    };
    static float x[N], ours[N], theirs[N];
    static uint8_t blocks[N];
    fill(x);
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        const char *name = ellm_type_name(types[t].type);
        decode_fn decode = (decode_fn)sym(lib, types[t].decode);
        encode_fn encode = (encode_fn)sym(lib, types[t].encode);
        if (!decode || !encode)
            continue;
        memset(blocks, 0, sizeof blocks);
        encode(x, blocks, N);
        decode(blocks, theirs, N);
        ellm_dequantize_row(types[t].type, blocks, ours, N);
        double d1 = decode_diff(theirs, ours);
        double err_theirs = sq_err(x, theirs, -1), kind_theirs[KINDS];
        for (int k = 0; k < KINDS; k++)
            kind_theirs[k] = sq_err(x, theirs, k);
        CHECK_MSG(d1 <= 1e-6, "%s: its blocks decode differently here (worst %.3g of block max)",
                  name, d1);
        memset(blocks, 0, sizeof blocks);
        ellm_quantize_row(types[t].type, x, blocks, N);
        ellm_dequantize_row(types[t].type, blocks, ours, N);
        decode(blocks, theirs, N);
        double d2 = decode_diff(ours, theirs);
        double err_ours = sq_err(x, ours, -1);
        CHECK_MSG(d2 <= 1e-6, "%s: our blocks decode differently there (worst %.3g of block max)",
                  name, d2);
        printf("%-6s decode agreement: its blocks %.2g, ours %.2g; squared error: ours %.6g, its "
               "reference quantizer %.6g (ratio %.3f)\n",
               name, d1, d2, err_ours, err_theirs, err_ours / err_theirs);
        CHECK_MSG(err_ours <= err_theirs * types[t].margin,
                  "%s: our squared error %.6g is above %.2f x its %.6g", name, err_ours,
                  types[t].margin, err_theirs);
        /* Per kind of block, except that differences below 1e-6 of the blocks' energy (the
         * half-precision rounding of a scale, as for the constant blocks) do not count. */
        for (int k = 0; k < KINDS; k++) {
            double mine = sq_err(x, ours, k), energy = 0;
            for (int i = 0; i < N; i++)
                if ((i / 32) % KINDS == k)
                    energy += (double)x[i] * x[i];
            printf("    %-12s ours %.4g, its %.4g\n", kind_names[k], mine, kind_theirs[k]);
            CHECK_MSG(mine <= kind_theirs[k] * types[t].margin + 1e-6 * energy,
                      "%s %s blocks: our squared error %.4g is above %.2f x its %.4g", name,
                      kind_names[k], mine, types[t].margin, kind_theirs[k]);
        }
    }
    check_q8_1(lib, x);
    dlclose(lib);
    return test_finish("ggml_legacy_crosscheck");
}
