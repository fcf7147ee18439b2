/*
 * LD_PRELOAD shim for benchmarking Janus on loopback only.
 *
 * Janus 1.1 skips interfaces flagged IFF_LOOPBACK when it gathers ICE candidates, so on a
 * machine where the benchmark keeps all traffic on 127.0.0.1 it would offer no candidate at
 * all. This wraps getifaddrs() and clears IFF_LOOPBACK in what it returns; nothing else
 * changes. Compiled by bench/janus/launch.py into a cache directory at run time.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <stddef.h>

typedef int (*getifaddrs_fn)(struct ifaddrs **);

int getifaddrs(struct ifaddrs **ifap) {
    static getifaddrs_fn real = NULL;
    if (real == NULL) {
        real = (getifaddrs_fn)dlsym(RTLD_NEXT, "getifaddrs");
        if (real == NULL) {
            return -1;
        }
    }
    int result = real(ifap);
    if (result == 0) {
        for (struct ifaddrs *ifa = *ifap; ifa != NULL; ifa = ifa->ifa_next) {
            ifa->ifa_flags &= ~IFF_LOOPBACK;
        }
    }
    return result;
}
