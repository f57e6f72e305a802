"""Operations on a lab's kernel: `apply` an action and get its undo (one module per kind
of change: devices, routes, iptables, sysctls, servers, images), and the probes that run
checks for real. They reach the lab through netstep.ops.access.LabAccess.
"""
