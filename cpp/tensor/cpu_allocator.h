// Host memory for tensors: 64-byte aligned, with a cache of freed blocks so that
// repeated forwards of the same shapes reuse pages instead of faulting in fresh ones.
#pragma once

#include <cstddef>

namespace tformer::cpu {

void* allocate(size_t bytes);
void deallocate(void* ptr, size_t bytes);
void empty_cache();
size_t cached_bytes();

}  // namespace tformer::cpu
