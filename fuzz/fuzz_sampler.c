/* libFuzzer target: the sampler against any logits (raw float bits, so NaN, +-inf, denormals and
 * huge values all occur) and any parameters. Whatever the input, a sample is a token id or -1,
 * never a NaN or -inf token, and ASan sees every read stay inside the candidates. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "edgellm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void require(int ok)
{
    if (!ok)
        abort();
}

/* Consumes n bytes (zeros once the input runs out). */
static void take(const uint8_t **data, size_t *size, void *out, size_t n)
{
    size_t k = n < *size ? n : *size;
    memset(out, 0, n);
    memcpy(out, *data, k);
    *data += k;
    *size -= k;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint16_t vocab_bits;
    uint8_t history;
    edgellm_sampler_params p;
    take(&data, &size, &vocab_bits, sizeof vocab_bits);
    take(&data, &size, &history, sizeof history);
    take(&data, &size, &p.temperature, sizeof p.temperature);
    take(&data, &size, &p.top_k, sizeof p.top_k);
    take(&data, &size, &p.top_p, sizeof p.top_p);
    take(&data, &size, &p.min_p, sizeof p.min_p);
    take(&data, &size, &p.repeat_penalty, sizeof p.repeat_penalty);
    take(&data, &size, &p.repeat_last_n, sizeof p.repeat_last_n);
    take(&data, &size, &p.presence_penalty, sizeof p.presence_penalty);
    take(&data, &size, &p.frequency_penalty, sizeof p.frequency_penalty);
    take(&data, &size, &p.seed, sizeof p.seed);
    p.repeat_last_n %= 4096; /* bounds the history ring, not the logic */
    int32_t n_vocab = 1 + vocab_bits % 1024;
    float *logits = malloc((size_t)n_vocab * sizeof *logits);
    require(logits != NULL);
    /* The rest of the input is the logits, repeated to fill the vocabulary. */
    for (int32_t i = 0; i < n_vocab; i++) {
        if (size >= sizeof(float))
            memcpy(&logits[i], data + ((size_t)i * sizeof(float)) % (size - size % sizeof(float)),
                   sizeof(float));
        else
            logits[i] = (float)(i % 7);
    }
    edgellm_sampler *s = NULL;
    if (edgellm_sampler_create(&p, n_vocab, &s) == EDGELLM_OK) {
        for (int k = 0; k < history; k++)
            edgellm_sampler_accept(s, (edgellm_token)((k * 131) % (n_vocab + 3)) - 1);
        for (int draw = 0; draw < 3; draw++) {
            edgellm_token t = edgellm_sampler_sample(s, logits);
            require(t >= -1 && t < n_vocab);
            /* Penalties keep NaN NaN and -inf -inf, so neither is ever picked. */
            if (t >= 0)
                require(!isnan(logits[t]) && logits[t] != -INFINITY);
            else
                for (int32_t i = 0; i < n_vocab && p.repeat_penalty == 1.0f &&
                                    p.presence_penalty == 0 && p.frequency_penalty == 0;
                     i++)
                    require(isnan(logits[i]) || logits[i] == -INFINITY);
            if (t >= 0)
                edgellm_sampler_accept(s, t);
        }
        edgellm_sampler_free(s);
    }
    free(logits);
    return 0;
}
