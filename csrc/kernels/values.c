/* The value types that kernels hand each other: "text". */
#include "parpy.h"

#include <stdlib.h>

static void
text_drop(parpy_value *value)
{
    free(((parpy_text *)(void *)value->bytes)->data);
}

const parpy_value_type parpy_value_text = {.name = "text", .drop = text_drop};
