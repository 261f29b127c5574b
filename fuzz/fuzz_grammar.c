/* libFuzzer target: any text given to the grammar compiler either compiles or fails with a
 * message; a compiled grammar then drives a matcher over a small vocabulary (tokens spanning
 * several characters, partial UTF-8, an end-of-generation token) for a few steps, always taking
 * an allowed token, which must then be accepted. Broken invariants abort. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "grammar/grammar.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void require(int ok)
{
    if (!ok)
        abort();
}

static const char *const pieces[] = {"", "a", "b", "ab", "{", "}", "\"", "\\", " ", "\n", "0", "12",
                                     "\xc3", "\xa9", "\xc3\xa9", "\xe2\x82\xac", "x\"y", "[", "]",
                                     ",", ":", "true", "null", "\xf0\x9f\x98\x80", "\xe0\x81\xbb"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ellm_grammar *g = NULL;
    if (ellm_grammar_parse((const char *)data, size, NULL, &g) != EDGELLM_OK) {
        require(g == NULL && edgellm_last_error()[0] != '\0');
        return 0;
    }
    enum { N = sizeof pieces / sizeof *pieces };
    int32_t lens[N];
    uint8_t eog[N] = {1};
    for (int i = 0; i < N; i++)
        lens[i] = (int32_t)strlen(pieces[i]);
    ellm_token_trie *trie = NULL;
    require(ellm_token_trie_build(N, pieces, lens, eog, &trie) == EDGELLM_OK);
    ellm_bound_grammar bg;
    require(ellm_bound_grammar_init(&bg, g, trie) == EDGELLM_OK);
    ellm_matcher *m = NULL;
    require(ellm_matcher_create(&bg, &m) == EDGELLM_OK);
    for (int step = 0; step < 16; step++) {
        uint8_t allowed[N];
        int32_t n = ellm_matcher_allowed(m, allowed);
        if (n <= 0)
            break;
        int pick = -1;
        for (int k = 0; k < N && pick < 0; k++) {
            int t = (k + step) % N;
            if (t != 0 && allowed[t])
                pick = t;
        }
        if (pick < 0) {
            require(allowed[0] && ellm_matcher_can_end(m));
            break;
        }
        require(ellm_matcher_accept_token(m, pick) == EDGELLM_OK);
    }
    ellm_matcher_free(m);
    ellm_bound_grammar_release(&bg); /* frees g */
    ellm_token_trie_destroy(trie);
    return 0;
}
