"""How things look: rich renderables for terminals and notebooks (views), handed to
netstep.render so that every model object draws itself without importing this layer.
"""
