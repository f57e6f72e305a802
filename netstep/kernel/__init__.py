"""The kernel, reached directly: namespaces as files, netlink (rtnl), interface ioctls,
sysctls, a lab's namespace registry, and the lab's HTTP servers (httpd, servers).

The lowest layer: it imports nothing of netstep but netstep.errors.
"""
