"""The course as data: actions (each with its undo), the command grammar, lessons parsed
from Markdown, checks (what a lesson expects), the course, and lesson 4 for N containers.

Nothing here changes the kernel (scale reads the size of its neighbour table): netstep.ops
applies actions and runs checks.
"""
