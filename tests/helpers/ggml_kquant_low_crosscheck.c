/* Bit-compatibility of Q2_K, Q3_K and IQ4_XS with another runtime: loads that runtime's shared
 * library (path in argv[1]: the ggml base library of the npm package @node-llama-cpp/linux-x64)
 * and, for super-blocks of random, Gaussian-with-outliers, zero, constant, negative-only, tiny
 * and positive-only values, checks that
 *   - the blocks its reference quantizer writes decode to the same values with our dequantizer
 *     as with its own (we read its files),
 *   - the blocks our quantizer writes decode to the same values with its dequantizer as with ours
 *     (it reads our files),
 * and prints both quantizers' squared errors; ours must not be worse than its reference quantizer
 * by more than the margin given per type. Its functions take (source, destination, count), the
 * same C ABI as ours. */
#include <dlfcn.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant/quant.h"
#include "test_util.h"

typedef void (*decode_fn)(const void *src, float *dst, int64_t n);
typedef void (*encode_fn)(const float *src, void *dst, int64_t n);

static uint64_t rng = 0x5851f42d4c957f2dull;
static float frand(void)
{
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(rng >> 11) * 0x1.0p-53 * 2.0 - 1.0);
}

enum { NB = 128, N = NB * 256 };

/* Block kinds cycle: zero, constant, negative-only, outliers, tiny, positive-only, random. */
static void fill(float *x)
{
    for (int i = 0; i < N; i++) {
        int b = i / 256;
        float g = (frand() + frand() + frand() + frand()) * 0.5f;
        x[i] = b % 8 == 0   ? 0.0f
               : b % 8 == 1 ? 0.375f
               : b % 8 == 2 ? -fabsf(g) - 0.2f
               : b % 8 == 3 ? g * (i % 41 == 0 ? 20.0f : 1.0f)
               : b % 8 == 4 ? g * 2e-4f
               : b % 8 == 5 ? fabsf(g) + 1.0f
               : b % 8 == 6 ? frand()
                            : g * 0.02f; /* the size of real weights */
    }
}

/* Largest difference between two decodings relative to the block's largest value. The two
 * runtimes may evaluate d * sc * q - dmin * m with a different rounding order (or a fused
 * multiply-add) in the last bit, nothing more. */
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

/* Squared error over the blocks of one kind (kind < 0: all blocks). */
static double sq_err(const float *x, const float *y, int kind)
{
    double s = 0;
    for (int i = 0; i < N; i++)
        if (kind < 0 || (i / 256) % 8 == kind)
            s += ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
    return s;
}

static const char *const kind_names[8] = {"zero", "constant", "negative", "outliers",
                                          "tiny", "positive", "uniform",  "weight-sized"};

static void *sym(void *lib, const char *name)
{
    void *p = dlsym(lib, name);
    CHECK_MSG(p != NULL, "%s not found in the reference library", name);
    return p;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: ggml_kquant_low_crosscheck LIBGGML_BASE.so\n");
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
        {ELLM_TYPE_Q2_K, "dequantize_row_q2_K", "quantize_row_q2_K_ref", 1.0},
        {ELLM_TYPE_Q3_K, "dequantize_row_q3_K", "quantize_row_q3_K_ref", 1.0},
        {ELLM_TYPE_IQ4_XS, "dequantize_row_iq4_xs", "quantize_row_iq4_xs_ref", 1.0},
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
        /* Its blocks, decoded by both. */
        memset(blocks, 0, sizeof blocks);
        encode(x, blocks, N);
        decode(blocks, theirs, N);
        ellm_dequantize_row(types[t].type, blocks, ours, N);
        double d1 = decode_diff(theirs, ours);
        double err_theirs = sq_err(x, theirs, -1), kind_theirs[8];
        for (int k = 0; k < 8; k++)
            kind_theirs[k] = sq_err(x, theirs, k);
        CHECK_MSG(d1 <= 1e-6, "%s: its blocks decode differently here (worst %.3g of block max)",
                  name, d1);
        /* Our blocks, decoded by both. */
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
        /* Per kind of block, the same, except that differences below 1e-6 of the blocks' energy
         * (1e-3 relative RMS: the half-precision rounding of the super-block scale, as for the
         * constant blocks) do not count. */
        for (int k = 0; k < 8; k++) {
            double mine = sq_err(x, ours, k), energy = 0;
            for (int i = 0; i < N; i++)
                if ((i / 256) % 8 == k)
                    energy += (double)x[i] * x[i];
            printf("    %-12s ours %.4g, its %.4g\n", kind_names[k], mine, kind_theirs[k]);
            CHECK_MSG(mine <= kind_theirs[k] * types[t].margin + 1e-6 * energy,
                      "%s %s blocks: our squared error %.4g is above %.2f x its %.4g", name,
                      kind_names[k], mine, types[t].margin, kind_theirs[k]);
        }
    }
    dlclose(lib);
    fflush(stdout); /* the figures before the summary, which goes to stderr */
    return test_finish("ggml_kquant_low_crosscheck");
}
