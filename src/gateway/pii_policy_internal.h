/* What the scanner asks of a policy. */
#ifndef EDGELLM_GATEWAY_PII_POLICY_INTERNAL_H
#define EDGELLM_GATEWAY_PII_POLICY_INTERNAL_H

#include "gateway/pii_internal.h"

bool ellm_pii_policy_enabled(const pii_policy *policy, pii_builtin type);
/* The user's terms and patterns; fails (naming the pattern, never the text) when a pattern
 * exceeds its match limits, so that nothing unscanned is sent. */
edgellm_status ellm_pii_policy_find_custom(const pii_policy *policy, const char *text, size_t len,
                                           pii_candidates *c);
/* Whether the value is on the policy's allow list. */
bool ellm_pii_policy_allows(const pii_policy *policy, const char *value, size_t len);

#endif
