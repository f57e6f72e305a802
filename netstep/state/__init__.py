"""What a lab looks like: snapshots (plain data, to and from JSON), the readers that fill
them from the kernel (peers named by the article's names), and diffs of two snapshots.
"""
