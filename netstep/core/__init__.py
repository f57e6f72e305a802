"""The engine and its lab: Lab (lock, build, destroy, the door to its namespaces), the
engine that moves through a course, its journal, signals, results, the cache of the last
known state (moments), and reset.
"""
