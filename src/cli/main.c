#include <stdio.h>
#include "pno/core.h"
int main(void) { printf("pno %s\n", PNO_VERSION_STRING); return 0; }
