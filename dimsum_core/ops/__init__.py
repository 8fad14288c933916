"""Numerical operators behind the mixers: the selective scan and its optional fused-kernel backend."""
