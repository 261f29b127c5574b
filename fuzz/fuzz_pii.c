/* libFuzzer target for the PII redaction of the gateway: any bytes are scanned, redacted and
 * restored (whole and as a stream cut at a byte the input chooses), and restoring must give the
 * input back exactly. The first byte selects a policy with user terms and patterns. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/pii.h"

static pii_policy *policies[2];

static const char policy_json[] =
    "{\"pii\": {\"terms\": {\"CONTACT\": [\"Alice Smith\", \"Bob\", \"Jos\\u00e9\"]},"
    "\"patterns\": {\"EMPLOYEE_ID\": \"EMP-[0-9]{6}\", \"WORDS\": \"\\\\b[a-z]+ing\\\\b\"},"
    "\"allow\": [\"support@example.com\"]}}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!policies[0] && (ellm_pii_policy_default(&policies[0]) != EDGELLM_OK ||
                         ellm_pii_policy_parse(policy_json, sizeof policy_json - 1, "fuzz",
                                          &policies[1]) != EDGELLM_OK))
        abort();
    if (size < 2)
        return 0;
    const pii_policy *policy = policies[data[0] & 1];
    size_t cut = data[1];
    const char *text = (const char *)data + 2;
    size_t len = size - 2;
    pii_session *s;
    if (ellm_pii_session_create(policy, &s) != EDGELLM_OK)
        abort();
    char *red = NULL, *back = NULL;
    size_t red_len, back_len;
    if (ellm_pii_redact(s, text, len, &red, &red_len, NULL, NULL) == EDGELLM_OK) {
        if (ellm_pii_restore(s, red, red_len, &back, &back_len) != EDGELLM_OK)
            abort();
        if (back_len != len || memcmp(back, text, len) != 0)
            abort(); /* restore(redact(x)) != x */
        pii_restorer *r;
        pii_buffer out = {0};
        if (cut > red_len)
            cut = red_len;
        if (ellm_pii_restorer_create(s, &r) != EDGELLM_OK ||
            ellm_pii_restorer_feed(r, red, cut, &out) != EDGELLM_OK ||
            ellm_pii_restorer_feed(r, red + cut, red_len - cut, &out) != EDGELLM_OK ||
            ellm_pii_restorer_finish(r, &out) != EDGELLM_OK)
            abort();
        if (out.len != len || memcmp(out.data, text, len) != 0)
            abort(); /* the stream restored differently */
        ellm_pii_restorer_free(r);
        ellm_pii_buffer_free(&out);
    }
    free(red);
    free(back);
    ellm_pii_session_free(s);
    return 0;
}
