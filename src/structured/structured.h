/* Structured output outside the core: JSON Schema -> GBNF grammar text (docs/structured-output.md
 * lists the supported keywords), and the grammar of any JSON object. The grammar text is then
 * compiled by the core's edgellm_grammar_compile like any user grammar. */
#ifndef EDGELLM_STRUCTURED_H
#define EDGELLM_STRUCTURED_H

#include <stddef.h>

#include <jansson.h>

/* Limits on what a schema may make the converter do. */
#define STRUCTURED_MAX_DEPTH 64           /* subschemas nested inside each other */
#define STRUCTURED_MAX_GRAMMAR (1u << 20) /* bytes of grammar produced */

/* The grammar of one JSON object of any content (for --json and response_format json_object):
 * whitespace between tokens bounded, numbers of bounded length. */
const char *ellm_structured_json_object_grammar(void);

/* Converts a JSON Schema to grammar text (malloc'd, NUL-terminated). On failure returns NULL and
 * writes a one-line message to err naming the keyword and where it is (a JSON pointer), e.g.
 * "unsupported JSON Schema keyword 'minimum' at /properties/age". */
char *ellm_structured_schema_to_grammar(const json_t *schema, char *err, size_t err_cap);

/* Same, from schema text. */
char *ellm_structured_schema_text_to_grammar(const char *text, size_t len, char *err,
                                             size_t err_cap);

#endif
