// The namespace the library registers its ops in: seqtorch, or, for the library of one cell generated from
// its equations (seqtorch/ops/native_cells.py), the one that build names with -DSEQTORCH_OPS_NAMESPACE=<name>,
// so that its scan_forward_cpp never clashes with the main library's or another cell's.
#pragma once

#ifndef SEQTORCH_OPS_NAMESPACE
#define SEQTORCH_OPS_NAMESPACE seqtorch
#endif
