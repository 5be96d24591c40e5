/* What children share about their role: see role.h. */
#include "common/role.h"

#include <sys/mman.h>

int vb_memory_headroom(size_t bytes)
{
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        return 0;
    }
    munmap(p, bytes);
    return 1;
}
