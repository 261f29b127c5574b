/* An application that defines functions with the names of libedgellm's internal ones, as one
 * linking another GGUF library (ggml has a ellm_gguf_find_tensor) does. Linked against libedgellm.a it
 * must link without "multiple definition" errors, and against either library the library must
 * keep calling its own functions and the application its own: it loads a model (which runs the
 * library's ellm_gguf_open and ellm_gguf_find_tensor) and then calls these.
 * Usage: symbol_clash MODEL.gguf   prints "ok N" (N = the model's n_vocab) */
#include <stdio.h>
#include <string.h>

#include <edgellm.h>

int ellm_gguf_open(void);
int ellm_gguf_find_tensor(const char *name);
int ellm_fail(int code);

int ellm_gguf_open(void) { return 7; }
int ellm_gguf_find_tensor(const char *name) { return (int)strlen(name); }
int ellm_fail(int code) { return code + 1; }

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: symbol_clash MODEL.gguf\n");
        return 2;
    }
    edgellm_model *model = NULL;
    if (edgellm_model_load(argv[1], NULL, &model) != EDGELLM_OK) {
        fprintf(stderr, "symbol_clash: %s\n", edgellm_last_error());
        return 1;
    }
    int32_t n_vocab = edgellm_n_vocab(model);
    edgellm_model_free(model);
    /* A failure the library reports through its own ellm_fail, not the application's. */
    if (edgellm_model_load("", NULL, &model) != EDGELLM_ERR_INVALID_ARGUMENT ||
        strstr(edgellm_last_error(), "no path") == NULL) {
        fprintf(stderr, "symbol_clash: the library's error path went astray\n");
        return 1;
    }
    if (ellm_gguf_open() != 7 || ellm_gguf_find_tensor("four") != 4 || ellm_fail(1) != 2) {
        fprintf(stderr, "symbol_clash: the application's own functions were replaced\n");
        return 1;
    }
    printf("ok %d\n", (int)n_vocab);
    return 0;
}
