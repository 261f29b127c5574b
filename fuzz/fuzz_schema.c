/* libFuzzer target: any text given to the JSON Schema converter either converts or fails with a
 * message, and whatever it converts must be a grammar the compiler accepts or refuses with a
 * message (never a crash). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "grammar/grammar.h"
#include "structured/structured.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[512];
    err[0] = 0;
    char *text = ellm_structured_schema_text_to_grammar((const char *)data, size, err, sizeof err);
    if (!text) {
        if (!err[0])
            abort();
        return 0;
    }
    ellm_grammar *g = NULL;
    if (ellm_grammar_parse(text, strlen(text), NULL, &g) != EDGELLM_OK && !edgellm_last_error()[0])
        abort();
    ellm_grammar_destroy(g);
    free(text);
    return 0;
}
