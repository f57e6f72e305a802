"""The kernel, reached directly: namespaces as files, netlink (pyroute2, loaded on first use),
interface ioctls, sysctls, a lab's namespace registry, and the lab's HTTP servers (httpd, servers).

The lowest layer: it imports nothing of netstep but netstep.errors.
"""
