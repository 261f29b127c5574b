#include "gateway/pii.h"
#include "test_util.h"
int main(void) { return test_finish("test_pii"); }
