#include "core/tensor_types.h"

#include <strings.h>

#include "core/checked_math.h"

static const ellm_type_traits type_traits[ELLM_TYPE_COUNT] = {
    [ELLM_TYPE_F32] = {"F32", 1, 4},
    [ELLM_TYPE_F16] = {"F16", 1, 2},
    [ELLM_TYPE_Q4_0] = {"Q4_0", 32, 18},
    [ELLM_TYPE_Q4_1] = {"Q4_1", 32, 20},
    [ELLM_TYPE_Q5_0] = {"Q5_0", 32, 22},
    [ELLM_TYPE_Q5_1] = {"Q5_1", 32, 24},
    [ELLM_TYPE_Q8_0] = {"Q8_0", 32, 34},
    [ELLM_TYPE_Q8_1] = {"Q8_1", 32, 36},
    [ELLM_TYPE_Q2_K] = {"Q2_K", 256, 84},
    [ELLM_TYPE_Q3_K] = {"Q3_K", 256, 110},
    [ELLM_TYPE_Q4_K] = {"Q4_K", 256, 144},
    [ELLM_TYPE_Q5_K] = {"Q5_K", 256, 176},
    [ELLM_TYPE_Q6_K] = {"Q6_K", 256, 210},
    [ELLM_TYPE_Q8_K] = {"Q8_K", 256, 292},
    [ELLM_TYPE_IQ2_XXS] = {"IQ2_XXS", 256, 66},
    [ELLM_TYPE_IQ2_XS] = {"IQ2_XS", 256, 74},
    [ELLM_TYPE_IQ3_XXS] = {"IQ3_XXS", 256, 98},
    [ELLM_TYPE_IQ1_S] = {"IQ1_S", 256, 50},
    [ELLM_TYPE_IQ4_NL] = {"IQ4_NL", 32, 18},
    [ELLM_TYPE_IQ3_S] = {"IQ3_S", 256, 110},
    [ELLM_TYPE_IQ2_S] = {"IQ2_S", 256, 82},
    [ELLM_TYPE_IQ4_XS] = {"IQ4_XS", 256, 136},
    [ELLM_TYPE_I8] = {"I8", 1, 1},
    [ELLM_TYPE_I16] = {"I16", 1, 2},
    [ELLM_TYPE_I32] = {"I32", 1, 4},
    [ELLM_TYPE_I64] = {"I64", 1, 8},
    [ELLM_TYPE_F64] = {"F64", 1, 8},
    [ELLM_TYPE_IQ1_M] = {"IQ1_M", 256, 56},
    [ELLM_TYPE_BF16] = {"BF16", 1, 2},
    [ELLM_TYPE_TQ1_0] = {"TQ1_0", 256, 54},
    [ELLM_TYPE_TQ2_0] = {"TQ2_0", 256, 66},
};

const ellm_type_traits *ellm_type_traits_of(uint32_t type)
{
    if (type >= ELLM_TYPE_COUNT || type_traits[type].name == NULL)
        return NULL;
    return &type_traits[type];
}

const char *ellm_type_name(uint32_t type)
{
    const ellm_type_traits *t = ellm_type_traits_of(type);
    return t ? t->name : "?";
}

bool ellm_type_from_name(const char *name, ellm_type *out)
{
    for (uint32_t i = 0; i < ELLM_TYPE_COUNT; i++) {
        if (type_traits[i].name && strcasecmp(type_traits[i].name, name) == 0) {
            *out = (ellm_type)i;
            return true;
        }
    }
    return false;
}

bool ellm_row_bytes(uint32_t type, uint64_t n, uint64_t *out_bytes)
{
    const ellm_type_traits *t = ellm_type_traits_of(type);
    if (!t || n % t->block_size != 0)
        return false;
    return ellm_mul_u64(n / t->block_size, t->block_bytes, out_bytes);
}
