/* methods.h: internal to attn/. Declares every method struct listed in methods.def, so each
 * method file defines its one exported symbol against a declaration. */
#ifndef ATTN_METHODS_H
#define ATTN_METHODS_H

#include "attn.h"

#define ATTN_METHOD(name) extern const attn_method attn_##name;
#include "methods.def"
#undef ATTN_METHOD

#endif
