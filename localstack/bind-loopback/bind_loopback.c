/*
 * bind_loopback.so: an LD_PRELOAD shim that keeps servers on loopback.
 *
 * LocalStack's gateway (twisted) binds 0.0.0.0 even when GATEWAY_LISTEN says
 * 127.0.0.1, and DynamoDB Local binds the wildcard address too. Preloading this
 * library into those processes rewrites every bind() on a wildcard address:
 *
 *   AF_INET   0.0.0.0  -> 127.0.0.1
 *   AF_INET6  ::       -> ::1
 *
 * An IPv6 wildcard socket that is not IPV6_V6ONLY would also accept IPv4, and
 * ::1 would not. Such a socket is bound to ::ffff:127.0.0.1 instead (the
 * IPv4-mapped loopback), so IPv4 clients of 127.0.0.1 keep working.
 *
 * The port and every other address pass through unchanged.
 *
 * Build: gcc -shared -fPIC -O2 -o bind_loopback.so bind_loopback.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

typedef int (*bind_fn)(int, const struct sockaddr *, socklen_t);

static bind_fn real_bind(void) {
    static bind_fn fn;
    if (!fn) {
        fn = (bind_fn)dlsym(RTLD_NEXT, "bind");
    }
    return fn;
}

/* 1 if the IPv6 socket only speaks IPv6, 0 if it is dual-stack. */
static int is_v6only(int fd) {
    int v6only = 0;
    socklen_t len = sizeof(v6only);
    if (getsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, &len) != 0) {
        return 1;
    }
    return v6only != 0;
}

int bind(int fd, const struct sockaddr *addr, socklen_t len) {
    bind_fn next = real_bind();
    if (!next) {
        errno = ENOSYS;
        return -1;
    }
    if (addr && addr->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)addr;
        if (in->sin_addr.s_addr == htonl(INADDR_ANY)) {
            struct sockaddr_in lo;
            memcpy(&lo, in, sizeof(lo));
            lo.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            return next(fd, (const struct sockaddr *)&lo, sizeof(lo));
        }
    } else if (addr && addr->sa_family == AF_INET6 &&
               len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)addr;
        if (IN6_IS_ADDR_UNSPECIFIED(&in6->sin6_addr)) {
            struct sockaddr_in6 lo;
            memcpy(&lo, in6, sizeof(lo));
            if (is_v6only(fd)) {
                lo.sin6_addr = in6addr_loopback;
            } else {
                /* ::ffff:127.0.0.1 */
                memset(&lo.sin6_addr, 0, sizeof(lo.sin6_addr));
                lo.sin6_addr.s6_addr[10] = 0xff;
                lo.sin6_addr.s6_addr[11] = 0xff;
                lo.sin6_addr.s6_addr[12] = 127;
                lo.sin6_addr.s6_addr[15] = 1;
            }
            return next(fd, (const struct sockaddr *)&lo, sizeof(lo));
        }
    }
    return next(fd, addr, len);
}
