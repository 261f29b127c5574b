/* Forced into every file of fuzz_request: every CPU-feature check answers no, so the portable
 * kernels run (the code the sanitizers should see), and clang 14 never meets the feature names it
 * does not know but GCC accepts ("f16c"). */
#define __builtin_cpu_supports(feature) 0
