/* libFuzzer target: any byte string given to the GGUF parser must parse into a consistent file or
 * fail cleanly; everything a parsed file exposes is walked so bad pointers are touched. */
#include <stdint.h>
#include <string.h>

#include "gguf/gguf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    gguf_file *f = NULL;
    if (gguf_parse(data, size, &f) != EDGELLM_OK)
        return 0;
    char buf[256];
    for (uint64_t i = 0; i < gguf_kv_count(f); i++)
        gguf_value_format(&gguf_kv_at(f, i)->value, buf, sizeof buf);
    volatile uint8_t sink = 0;
    for (uint64_t i = 0; i < gguf_tensor_count(f); i++) {
        const gguf_tensor_info *t = gguf_tensor_at(f, i);
        if (t->n_bytes > 0)
            sink ^= ((const uint8_t *)t->data)[0] ^ ((const uint8_t *)t->data)[t->n_bytes - 1];
    }
    (void)sink;
    gguf_close(f);
    return 0;
}
