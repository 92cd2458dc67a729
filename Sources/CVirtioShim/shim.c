#define _GNU_SOURCE
#include "CVirtioShim.h"
