/* Block layouts of the quantized formats, as the GGUF format defines them. */
#ifndef EDGELLM_QUANT_BLOCKS_H
#define EDGELLM_QUANT_BLOCKS_H

#include <stdint.h>

#define QK4_0 32
#define QK8_0 32

typedef struct block_q4_0 {
    uint16_t d;            /* scale, IEEE half */
    uint8_t qs[QK4_0 / 2]; /* value j in low nibble of qs[j], value j+16 in the high nibble */
} block_q4_0;

typedef struct block_q8_0 {
    uint16_t d; /* scale, IEEE half */
    int8_t qs[QK8_0];
} block_q8_0;

/* The other 32-value formats of the GGUF definition. A "_1" format stores a minimum m beside the
 * scale: value = d * q + m. Nibbles are laid out as in Q4_0 (value j in the low nibble of qs[j],
 * value j + 16 in the high nibble); the 5-bit formats keep the fifth bit of value j in bit j of
 * qh read as a little-endian 32-bit word. */
#define QK4_1 32
#define QK5_0 32
#define QK5_1 32
#define QK8_1 32
#define QK4_NL 32

typedef struct block_q4_1 {
    uint16_t d;            /* scale, IEEE half */
    uint16_t m;            /* minimum, IEEE half */
    uint8_t qs[QK4_1 / 2]; /* q in 0..15: value = d * q + m */
} block_q4_1;

typedef struct block_q5_0 {
    uint16_t d;            /* scale, IEEE half */
    uint8_t qh[4];         /* fifth bits */
    uint8_t qs[QK5_0 / 2]; /* low 4 bits; q in 0..31: value = d * (q - 16) */
} block_q5_0;

typedef struct block_q5_1 {
    uint16_t d;            /* scale, IEEE half */
    uint16_t m;            /* minimum, IEEE half */
    uint8_t qh[4];         /* fifth bits */
    uint8_t qs[QK5_1 / 2]; /* low 4 bits; q in 0..31: value = d * q + m */
} block_q5_1;

/* IQ4_NL: 4-bit indices into the non-linear levels ellm_kvalues_iq4nl; value = d * level. */
typedef struct block_iq4_nl {
    uint16_t d; /* scale, IEEE half */
    uint8_t qs[QK4_NL / 2];
} block_iq4_nl;

/* Activation format for the "_1" weights (never stored in files): Q8_0 plus s = d * sum(qs), so a
 * weight block's minimum contributes m * s to the dot product with one multiplication. */
typedef struct block_q8_1 {
    uint16_t d; /* scale, IEEE half */
    uint16_t s; /* d (as stored) times the sum of qs, IEEE half */
    int8_t qs[QK8_1];
} block_q8_1;

/* Activation format the K-quant weight kernels consume (never stored in files): one float scale,
 * 256 int8 values, and the sums of each 16 values so kernels can apply block minimums cheaply. */
#define QK_K 256

typedef struct block_q8_K {
    float d;
    int8_t qs[QK_K];
    int16_t bsums[QK_K / 16];
} block_q8_K;

/* Q8_K for kernels that multiply in 16-bit lanes (ELLM_ACT_Q8_K_WIDE, quant.h): the values as
 * int16, each 16 stored as their 8 of even index then their 8 of odd index; 560 bytes so that
 * every block starts 16-byte aligned. */
typedef struct block_q8_K_wide {
    int16_t qs[QK_K];
    int16_t bsums[QK_K / 16];
    float d;
    float unused[3];
} block_q8_K_wide;

/* Q8_K for the AVX-512 IQ4_XS decode kernel (ELLM_ACT_Q8_K_HALVES, quant.h), whose 64-byte loads
 * of quants hold four sub-blocks of 32, one per 128-bit lane, their first 16 values in the low
 * nibbles and the last 16 in the high ones. qs holds the values in that order: 64-byte group
 * 2h + k is values 16k .. 16k + 15 of sub-blocks 4h .. 4h + 3, 16 bytes each. offset[h] is the
 * kernel's starting sum for half h: -32 x the sum of sub-block 4h + L's 32 values in each of the
 * four int32 lanes of 128-bit lane L, which takes off the 128 the kernel adds to every level. */
typedef struct block_q8_K_halves {
    int8_t qs[QK_K];
    int32_t offset[2][16];
    float d;
    float unused[15];
} block_q8_K_halves;

/* Two Q8_K blocks (2p, 2p + 1) for the AVX-512 Q2_K and Q3_K kernels (ELLM_ACT_Q8_K_PAIRS,
 * quant.h), which take super-blocks in pairs and read a block's 64 bytes of 2-bit quants as one
 * vector, field f (bits 2f) of its 32-byte halves holding values 32f .. 32f + 31 and 128 + 32f ..
 * 128 + 32f + 31.
 * qs[b] holds block b's values in that order (64-byte group f), bsums[b] its bsums, d the two
 * scales as d0, d0, d1, d1 (the pair's float lanes). A row of an odd number of blocks repeats
 * its last block in the second half of its last pair. */
typedef struct block_q8_K_pair {
    int8_t qs[2][QK_K];
    int16_t bsums[2][QK_K / 16];
    float d[4];
    float unused[12];
} block_q8_K_pair;

/* Q8_K for kernels that multiply signed weights by activation magnitudes (ELLM_ACT_Q8_K_MAG,
 * quant.h; maddubs takes one operand unsigned): the values, each 64 stored as their values 0..15,
 * 32..47, 16..31, 48..63 (the order in which the AVX2 IQ4_XS kernel meets them), then their
 * magnitudes |q| (128 for -128) as unsigned bytes in the same order; 544 bytes, so every block
 * starts 32-byte aligned. */
typedef struct block_q8_K_mag {
    int8_t qs[QK_K];
    uint8_t mag[QK_K];
    float d;
    float unused[7];
} block_q8_K_mag;

/* K-quant weight formats: super-blocks of QK_K values. In Q4_K and Q5_K each of the 8 sub-blocks
 * of 32 values has a 6-bit scale sc and a 6-bit min m, packed into 12 bytes: for sub-block j < 4,
 * sc = scales[j] & 63 and m = scales[j + 4] & 63; for j >= 4, sc = (scales[j + 4] & 15) |
 * (scales[j - 4] >> 6) << 4 and m = (scales[j + 4] >> 4) | (scales[j] >> 6) << 4. A value is
 * d * sc * q - dmin * m. The quants run in chunks of 64 values: qs[32 * c + l] holds value
 * 64 * c + l in its low nibble and value 64 * c + 32 + l in its high nibble. */
#define K_SCALE_SIZE 12

typedef struct block_q4_K {
    uint16_t d;                   /* super-block scale of the sub-block scales, IEEE half */
    uint16_t dmin;                /* super-block scale of the sub-block mins, IEEE half */
    uint8_t scales[K_SCALE_SIZE]; /* 8 scales and 8 mins, 6 bits each */
    uint8_t qs[QK_K / 2];         /* 4-bit quants */
} block_q4_K;

/* Q5_K: Q4_K's layout plus a fifth bit per value: bit 2c of qh[l] is the high bit of value
 * 64 * c + l, bit 2c + 1 that of value 64 * c + 32 + l. */
typedef struct block_q5_K {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[K_SCALE_SIZE];
    uint8_t qh[QK_K / 8]; /* high bits */
    uint8_t qs[QK_K / 2]; /* low 4 bits */
} block_q5_K;

/* Q6_K: 16 sub-blocks of 16 values, value = d * scales[sub-block] * (q - 32) with q in 0..63.
 * Each half of 128 values (h = 0, 1) uses ql[64 h ..], qh[32 h ..]; for l < 32, ql[l] holds
 * values l (low nibble) and l + 64 (high nibble), ql[l + 32] holds values l + 32 and l + 96, and
 * qh[l] holds the top two bits of values l, l + 32, l + 64, l + 96 at bits 0, 2, 4, 6. */
typedef struct block_q6_K {
    uint8_t ql[QK_K / 2];     /* low 4 bits */
    uint8_t qh[QK_K / 4];     /* high 2 bits */
    int8_t scales[QK_K / 16]; /* sub-block scales */
    uint16_t d;               /* super-block scale, IEEE half */
} block_q6_K;
/* Low-bit K-quant weight formats (super-blocks of QK_K values). */

/* Q2_K: 16 sub-blocks of 16 values. Value v of sub-block s is
 *   d * (scales[s] & 15) * q - dmin * (scales[s] >> 4),   q in 0..3.
 * The 2-bit q of value 128*h + 32*j + l (h < 2, j < 4, l < 32) is bits 2j..2j+1 of qs[32*h + l]. */
typedef struct block_q2_K {
    uint8_t scales[QK_K / 16]; /* low nibble: scale, high nibble: min */
    uint8_t qs[QK_K / 4];
    uint16_t d;    /* super-block scale of the scales, IEEE half */
    uint16_t dmin; /* super-block scale of the mins, IEEE half */
} block_q2_K;

/* Q3_K: 16 sub-blocks of 16 values, value = d * (sc[s] - 32) * q with q in -4..3 stored as q + 4:
 * the low 2 bits of value 128*h + 32*j + l in bits 2j..2j+1 of qs[32*h + l], the third bit in
 * bit 4h + j of hmask[l]. The 6-bit sc[s] (0..63): low 4 bits in scales[s] (s < 8) or the high
 * nibble of scales[s - 8] (s >= 8); high 2 bits in bits 2*(s / 4)..+1 of scales[8 + s % 4]. */
typedef struct block_q3_K {
    uint8_t hmask[QK_K / 8];
    uint8_t qs[QK_K / 4];
    uint8_t scales[12];
    uint16_t d; /* IEEE half */
} block_q3_K;

/* IQ4_XS: 8 sub-blocks of 32 values, value = d * (ls[b] - 32) * kvalues_iq4nl[index] with the
 * 6-bit ls[b]: low 4 bits in nibble b % 2 of scales_l[b / 2], high 2 bits in bits 2b..2b+1 of
 * scales_h. Index of value 32*b + j (j < 16) is the low nibble of qs[16*b + j], of value
 * 32*b + j + 16 the high nibble. */
typedef struct block_iq4_xs {
    uint16_t d; /* IEEE half */
    uint16_t scales_h;
    uint8_t scales_l[QK_K / 64];
    uint8_t qs[QK_K / 2];
} block_iq4_xs;

/* The 16 non-linear levels shared by IQ4_NL and IQ4_XS. */
extern const int8_t ellm_kvalues_iq4nl[16];

_Static_assert(sizeof(block_q4_0) == 18, "Q4_0 block is 18 bytes");
_Static_assert(sizeof(block_q8_0) == 34, "Q8_0 block is 34 bytes");
_Static_assert(sizeof(block_q4_1) == 20, "Q4_1 block is 20 bytes");
_Static_assert(sizeof(block_q5_0) == 22, "Q5_0 block is 22 bytes");
_Static_assert(sizeof(block_q5_1) == 24, "Q5_1 block is 24 bytes");
_Static_assert(sizeof(block_iq4_nl) == 18, "IQ4_NL block is 18 bytes");
_Static_assert(sizeof(block_q8_1) == 36, "Q8_1 block is 36 bytes");
_Static_assert(sizeof(block_q8_K) == 292, "Q8_K block is 292 bytes");
_Static_assert(sizeof(block_q8_K_wide) == 560, "wide Q8_K block is 560 bytes");
_Static_assert(sizeof(block_q8_K_halves) == 448, "Q8_K halves block is 448 bytes");
_Static_assert(sizeof(block_q8_K_pair) == 640, "Q8_K pair is 640 bytes");
_Static_assert(sizeof(block_q8_K_mag) == 544, "magnitude Q8_K block is 544 bytes");
_Static_assert(sizeof(block_q4_K) == 144, "Q4_K block is 144 bytes");
_Static_assert(sizeof(block_q5_K) == 176, "Q5_K block is 176 bytes");
_Static_assert(sizeof(block_q6_K) == 210, "Q6_K block is 210 bytes");
_Static_assert(sizeof(block_q2_K) == 84, "Q2_K block is 84 bytes");
_Static_assert(sizeof(block_q3_K) == 110, "Q3_K block is 110 bytes");
_Static_assert(sizeof(block_iq4_xs) == 136, "IQ4_XS block is 136 bytes");

#endif
